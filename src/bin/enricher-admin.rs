//! `enricher-admin`: operator commands for a deployed enricher, run with the operator's AWS
//! credentials and the enricher's configuration variables (at least CACHE_TABLE).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::finding::is_account_id;
use securityhub_enricher::service::directory::Resolution;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::wiring::Clients;

#[derive(Parser)]
#[command(about = "Operator commands for securityhub-enricher")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forget cached metadata so the next batch looks the accounts up again (after a re-tag or
    /// a move). Running enrichers keep their in-memory copy for up to MEMORY_CACHE_SECONDS.
    Invalidate {
        /// Account ids to forget.
        #[arg(long = "account", value_name = "ACCOUNT_ID", required_unless_present = "all")]
        accounts: Vec<String>,
        /// Forget every cached account.
        #[arg(long, conflicts_with = "accounts")]
        all: bool,
    },
    /// Look accounts up now and store the result: warms the cache before a large backfill.
    Warm {
        #[arg(long = "account", value_name = "ACCOUNT_ID", required = true)]
        accounts: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = EnricherConfig::from_env().context("reading the enricher's configuration")?;
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let clients = Clients::for_enricher("enricher-admin", &config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    match cli.command {
        Command::Invalidate { all: true, .. } => {
            let n = enricher.directory.invalidate_all().await?;
            println!("invalidated {n} cached accounts in {}", config.cache_table);
        }
        Command::Invalidate { accounts, .. } => {
            check_ids(&accounts)?;
            let n = enricher.directory.invalidate(&accounts).await?;
            println!("invalidated {n} cached accounts in {}", config.cache_table);
        }
        Command::Warm { accounts } => {
            check_ids(&accounts)?;
            enricher.directory.invalidate(&accounts).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
            let (resolved, stats) = enricher.directory.prefetch(&accounts, deadline).await;
            for id in &accounts {
                let state = match resolved.get(id) {
                    Some(Resolution::Fresh(e)) if matches!(e.record, AccountRecord::NotFound) => {
                        "not in the organization"
                    }
                    Some(Resolution::Fresh(_)) => "cached",
                    Some(Resolution::Stale(_)) => "lookup failed; stale entry kept",
                    _ => "lookup failed",
                };
                println!("{id}: {state}");
            }
            if stats.lookup_failures + stats.lookups_out_of_budget > 0 {
                bail!("{} lookups failed", stats.lookup_failures + stats.lookups_out_of_budget);
            }
        }
    }
    Ok(())
}

fn check_ids(accounts: &[String]) -> Result<()> {
    if let Some(bad) = accounts.iter().find(|a| !is_account_id(a)) {
        bail!("{bad:?} is not a 12-digit AWS account id");
    }
    Ok(())
}
