//! `enricher-admin`: operator commands for a deployed enricher, run with the operator's AWS
//! credentials and the enricher's configuration variables (at least CACHE_TABLE).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use securityhub_enricher::adapters::deployment::SdkProbe;
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::finding::is_account_id;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::directory::{Resolution, WarmScope};
use securityhub_enricher::service::doctor::{TTL_ATTRIBUTE, Targets, diagnose};
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::refresh::ACCOUNTS_PER_SWEEP;
use securityhub_enricher::service::sweep::{SweepReport, Sweeper};
use securityhub_enricher::telemetry::Report;
use securityhub_enricher::wiring::{Clients, organizations_source, sweep_state};

#[derive(Parser)]
#[command(about = "Operator commands for securityhub-enricher")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forget cached metadata so the next batch looks the accounts up again (after a re-tag or
    /// a move), and queue the accounts for refresh: the refresher rewrites their findings.
    /// Running enrichers keep their in-memory copy for up to MEMORY_CACHE_SECONDS.
    Invalidate {
        /// Account ids to forget.
        #[arg(long = "account", value_name = "ACCOUNT_ID", required_unless_present = "all")]
        accounts: Vec<String>,
        /// Forget every cached account.
        #[arg(long, conflicts_with = "accounts")]
        all: bool,
    },
    /// Look accounts up now and store the result: warms the cache before a large backfill.
    /// `--all` walks the whole OU tree (about OUs + accounts ÷ 20 Organizations calls for names
    /// and paths, then tags and contact per account) instead of about three calls per account.
    Warm {
        #[arg(long = "account", value_name = "ACCOUNT_ID", required_unless_present = "all")]
        accounts: Vec<String>,
        /// Every account of the organization.
        #[arg(long, conflicts_with = "accounts")]
        all: bool,
        /// Stop after this long.
        #[arg(long, value_name = "N", default_value_t = 3600)]
        max_seconds: u64,
    },
    /// Enrich every ACTIVE finding that needs it (never enriched, Partial, or enriched from
    /// metadata that has since changed), in every account or the given ones; findings already
    /// current are not written. Shares BatchUpdateFindings' quota with the running enrichers
    /// and yields to them.
    Sweep {
        /// Sweep only these accounts' findings (20 at a time).
        #[arg(long = "account", value_name = "ACCOUNT_ID")]
        accounts: Vec<String>,
        /// Stop after this long; the summary says what is left.
        #[arg(long, value_name = "N", default_value_t = 3600)]
        max_seconds: u64,
        /// Also write the summary to this file as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Read-only checks of the deployment, each printed as pass or fail with its fix: the
    /// Organizations delegation, the contact role, Security Hub (administrator, aggregation,
    /// both hubs), the Detective graph and its coverage, the event bus and rules, the tables
    /// and their TTL, the refresher's schedule. Exits non-zero when any check fails.
    Doctor {
        /// Print the checks as one JSON document instead.
        #[arg(long)]
        json: bool,
        /// The findings rules' name prefix on the default bus (the stack's name).
        #[arg(long, value_name = "PREFIX")]
        rule_prefix: Option<String>,
        /// The refresher's schedule rule.
        #[arg(long, value_name = "NAME")]
        schedule_rule: Option<String>,
        /// The behavior graph (default: the one ListGraphs returns, as the investigator finds it).
        #[arg(long, value_name = "ARN")]
        graph_arn: Option<String>,
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
        Command::Doctor { json, rule_prefix, schedule_rule, graph_arn } => {
            let probe = SdkProbe::new(
                clients.organizations.clone(),
                clients.securityhub.clone(),
                clients.detective.clone(),
                clients.eventbridge.clone(),
                clients.dynamodb.clone(),
                aws_sdk_sts::Client::new(&sdk),
                sdk.region().map(ToString::to_string).unwrap_or_default(),
            );
            let targets = Targets {
                cache_table: config.cache_table.clone(),
                jobs_table: config.investigations.as_ref().map(|i| i.jobs_table.clone()),
                contact_role: config.contact_role.clone(),
                events_bus: config.events_bus.clone(),
                graph_arn,
                rule_prefix,
                schedule_rule,
                ttl_attribute: TTL_ATTRIBUTE.to_owned(),
            };
            let report = diagnose(&probe, &targets).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if report.failed() > 0 {
                std::process::exit(1);
            }
        }
        Command::Invalidate { all: true, .. } => {
            let n = enricher.directory.invalidate_all().await?;
            println!("invalidated {n} cached accounts in {}", config.cache_table);
        }
        Command::Invalidate { accounts, .. } => {
            check_ids(&accounts)?;
            let n = enricher.directory.invalidate(&accounts).await?;
            sweep_state(&config, &clients).enqueue(&accounts).await?;
            println!("invalidated {n} cached accounts in {}; queued them for refresh", config.cache_table);
        }
        Command::Sweep { accounts, max_seconds, json } => {
            check_ids(&accounts)?;
            let sweeper = Sweeper::from_clients(&config, &clients);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(max_seconds);
            let started = std::time::Instant::now();
            let on_terminal = std::io::stderr().is_terminal();
            let progress = |r: &SweepReport| {
                if on_terminal {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let written = r.enriched_complete + r.still_partial;
                    let left = Duration::from_secs(max_seconds).saturating_sub(started.elapsed()).as_secs();
                    eprint!(
                        "\rexamined {} · written {written} · current {} · {:.0} findings/s · {left} s of the time budget left   ",
                        r.examined,
                        r.current,
                        r.examined as f64 / secs,
                    );
                }
            };
            let mut total = SweepReport::default();
            // GetFindings filters on at most 20 account ids: larger lists go 20 at a time.
            let chunks: Vec<&[String]> =
                if accounts.is_empty() { vec![&[]] } else { accounts.chunks(ACCOUNTS_PER_SWEEP).collect() };
            for chunk in chunks {
                let report = sweeper.run(chunk, None, deadline, &progress).await;
                let stopped = report.stopped.is_some();
                total += report;
                if stopped {
                    break;
                }
            }
            if on_terminal {
                eprintln!();
            }
            total.log();
            print_summary(&total);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&total)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if !total.balances() {
                bail!("the sweep's counts do not balance");
            }
        }
        Command::Warm { all: true, max_seconds, .. } => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(max_seconds);
            let walk = organizations_source(&config, &clients);
            let before = calls.snapshot();
            let report = enricher.directory.warm(&walk, WarmScope::Everything, deadline).await?;
            let organizations: u64 =
                calls.since(&before).iter().filter(|((s, _), _)| s == "Organizations").map(|(_, c)| c.calls).sum();
            println!(
                "warmed {} of {} accounts ({} failed, {} not reached in time) with {organizations} Organizations calls ({:.2} per account)",
                report.cached,
                report.accounts,
                report.failed,
                report.not_reached,
                organizations as f64 / report.accounts.max(1) as f64
            );
            if report.failed > 0 {
                bail!("{} accounts could not be warmed", report.failed);
            }
            if report.not_reached > 0 {
                bail!("{} accounts were not reached within --max-seconds {max_seconds}", report.not_reached);
            }
        }
        Command::Warm { accounts, .. } => {
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

fn print_summary(r: &SweepReport) {
    println!("findings examined      {}", r.examined);
    println!("  already current      {}", r.current);
    println!("  enriched complete    {}", r.enriched_complete);
    println!("  still partial        {}", r.still_partial);
    println!("  skipped              {} {:?}", r.skipped.values().sum::<usize>(), r.skipped);
    println!("  failed (retry)       {} {:?}", r.failed.values().sum::<usize>(), r.failed);
    println!("GetFindings calls      {}", r.get_findings_calls);
    println!(
        "BatchUpdateFindings    {} accepted ({} sent) against the bound Σ⌈n/100⌉ = {}",
        r.writes.updates.findings_per_call.len(),
        r.writes.updates.calls,
        r.writes.minimum_calls
    );
    match (&r.stopped, &r.resume_token) {
        (None, _) => println!("remaining              none: every active finding was examined"),
        (Some(why), _) => println!("remaining              not examined yet ({why}); run the sweep again"),
    }
}

fn check_ids(accounts: &[String]) -> Result<()> {
    if let Some(bad) = accounts.iter().find(|a| !is_account_id(a)) {
        bail!("{bad:?} is not a 12-digit AWS account id");
    }
    Ok(())
}
