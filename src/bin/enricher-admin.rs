//! `enricher-admin`: operator commands for a deployed enricher, run with the operator's AWS
//! credentials and the enricher's configuration: read from the deployed stack with
//! `--stack NAME` (the enricher function's environment), or else from the enricher's variables
//! set by hand (at least CACHE_TABLE).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use securityhub_enricher::adapters::deployment::SdkProbe;
use securityhub_enricher::adapters::redrive::{KinesisReplay, SqsDeadLetters};
use securityhub_enricher::adapters::sdk::{ApiCalls, app_name, load_sdk_config};
use securityhub_enricher::adapters::stack::{self, DeployedStack, read_stack};
use securityhub_enricher::config::{EnricherConfig, map_vars};
use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::finding::is_account_id;
use securityhub_enricher::core::posture::Grouping;
use securityhub_enricher::core::role_calls::{RoleCalls, roles_to_check};
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::directory::{Resolution, WarmScope};
use securityhub_enricher::service::doctor::{FindingsRules, PipeTarget, TTL_ATTRIBUTE, Targets, diagnose};
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::posture_report;
use securityhub_enricher::service::redrive::{Disposition, RedriveOptions, RedriveReport, redrive};
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::service::sweep::SweepReport;
use securityhub_enricher::telemetry::Report;
use securityhub_enricher::wiring::{Clients, organizations_source, posture_store, sweep_state};

#[derive(Parser)]
#[command(about = "Operator commands for securityhub-enricher")]
struct Cli {
    /// Read the configuration from this deployed stack of pipes/template.yaml (CloudFormation
    /// ListStackResources, then the enricher function's environment with Lambda
    /// GetFunctionConfiguration) instead of the environment variables; `redrive` also finds the
    /// pipe's dead-letter queue and the stream there.
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
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
    /// Enrich every active finding of both hubs that needs it (never enriched, Partial, or
    /// enriched from metadata that has since changed), in every account or the given ones;
    /// findings already current are not written. Runs the refresher's loop: the directory is
    /// warmed from the walk of the OU tree beside the pass, and passes repeat while findings
    /// stay Partial and progress is made, until --max-seconds. Shares BatchUpdateFindings'
    /// quota with the running enrichers and yields to them; publishes what it writes when
    /// ENRICHED_EVENTS_BUS is set; leaves the refresher's checkpoint and queue alone.
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
    /// Send dead-lettered batches back: for each message of the pipe's dead-letter queue (the
    /// batch's shard and sequence numbers), read the batch's records back from the stream while
    /// it retains them and put them on the stream again with their partition keys; a message is
    /// deleted only when all its records were sent. Says what could not be sent. Exit status 1
    /// when a message is kept.
    Redrive {
        /// The dead-letter queue's URL (output DeadLetterQueueUrl); with --stack, the stack's.
        #[arg(long, value_name = "URL")]
        queue_url: Option<String>,
        /// The findings stream's name; with --stack, the stack's.
        #[arg(long, value_name = "NAME")]
        stream: Option<String>,
        /// Stop after this many dead letters.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_messages: usize,
        /// Read the batches back and report; send and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete a message whose records were all sent except those past the stream's
        /// retention (they can never be sent); by default it stays, and says so.
        #[arg(long)]
        discard_expired: bool,
        /// Also write the report to this file as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Who holds the open findings: the last completed pass's posture counts (refresher or
    /// `sweep` of every finding), read from the cache table alone (no Security Hub request),
    /// most critical first, with the age of the oldest open critical and high finding, how old
    /// the counts are, and how far a running pass is. Exit status 1 when no pass has completed.
    Report {
        /// Group by the owner, environment or criticality routing gave the findings, or by OU path.
        #[arg(long, value_enum, default_value = "owner")]
        by: By,
        /// table (the default on a terminal), csv (the default otherwise) or json.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// With --by ou: cut OU paths at this many segments (2: Root/Workloads); default whole paths.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        depth: Option<u16>,
    },
    /// Read-only checks of the deployment, each printed as pass or fail with its fix: the
    /// Organizations delegation, the contact role, Security Hub (administrator, aggregation,
    /// both hubs), the Detective graph and its coverage, the event bus and rules, the tables
    /// and their TTL, the refresher's and investigator's schedules, the pipe's state and
    /// wiring. With --stack every name comes from the stack. Exits non-zero when any check
    /// fails.
    Doctor {
        /// Print the checks as one JSON document instead.
        #[arg(long)]
        json: bool,
        /// Without --stack: the findings rules' name prefix on the default bus (the stack's
        /// name); with --stack the stack's findings rules are checked by name.
        #[arg(long, value_name = "PREFIX")]
        rule_prefix: Option<String>,
        /// Without --stack: the refresher's schedule rule.
        #[arg(long, value_name = "NAME")]
        schedule_rule: Option<String>,
        /// Without --stack: the pipe's name (its state only; with --stack also its source and
        /// target).
        #[arg(long, value_name = "NAME")]
        pipe: Option<String>,
        /// The behavior graph (default: the one ListGraphs returns, as the investigator finds it).
        #[arg(long, value_name = "ARN")]
        graph_arn: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum By {
    Owner,
    Environment,
    Criticality,
    Ou,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let admin = sdk.to_builder().app_name(app_name("enricher-admin")).build();
    let deployed = match &cli.stack {
        Some(name) => {
            let cloudformation = aws_sdk_cloudformation::Client::from_conf(
                aws_sdk_cloudformation::config::Builder::from(&admin).interceptor(calls.clone()).build(),
            );
            let lambda = aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&admin).interceptor(calls.clone()).build(),
            );
            Some(read_stack(&cloudformation, &lambda, name).await.with_context(|| format!("reading stack {name}"))?)
        }
        None => None,
    };
    if let Command::Redrive { queue_url, stream, max_messages, dry_run, discard_expired, json } = cli.command {
        let (queue_url, stream) = match &deployed {
            Some(d) => (
                queue_url.unwrap_or(d.resource(stack::PIPE_DEAD_LETTER_QUEUE)?.to_owned()),
                stream.unwrap_or(d.resource(stack::FINDINGS_STREAM)?.to_owned()),
            ),
            None => (
                queue_url.context("--queue-url is required without --stack")?,
                stream.context("--stream is required without --stack")?,
            ),
        };
        let queue = SqsDeadLetters::new(
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&admin).interceptor(calls.clone()).build(),
            ),
            &queue_url,
        );
        let replay = KinesisReplay::new(aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(&admin).interceptor(calls.clone()).build(),
        ));
        let options = RedriveOptions { stream, max_letters: max_messages, dry_run, discard_expired };
        let report = redrive(&queue, &replay, &options).await.context("redrive")?;
        print_redrive(&report, &queue_url);
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if report.kept() > 0 {
            bail!("{} dead letters kept in {queue_url}: see above for what could not be sent", report.kept());
        }
        return Ok(());
    }
    let config = configuration(deployed.as_ref())?;
    let clients = Clients::for_enricher("enricher-admin", &config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    match cli.command {
        Command::Doctor { json, rule_prefix, schedule_rule, pipe, graph_arn } => {
            let probe = SdkProbe::new(
                clients.organizations.clone(),
                clients.securityhub.clone(),
                clients.detective.clone(),
                clients.eventbridge.clone(),
                clients.dynamodb.clone(),
                aws_sdk_pipes::Client::from_conf(
                    aws_sdk_pipes::config::Builder::from(&admin).interceptor(calls.clone()).build(),
                ),
                aws_sdk_iam::Client::from_conf(
                    aws_sdk_iam::config::Builder::from(&admin).interceptor(calls.clone()).build(),
                ),
                aws_sdk_sts::Client::new(&sdk),
                sdk.region().map(ToString::to_string).unwrap_or_default(),
            );
            let named = NamedByHand { rule_prefix, schedule_rule, pipe };
            let targets = Targets {
                cache_table: config.cache_table.clone(),
                jobs_table: config.investigations.as_ref().map(|i| i.jobs_table.clone()),
                contact_role: config.contact_role.clone(),
                events_bus: config.events_bus.clone(),
                graph_arn,
                roles: match &deployed {
                    Some(d) => Some(roles_to_check(&RoleCalls::embedded()?, &d.values())),
                    None => None,
                },
                ..doctor_targets(deployed.as_ref(), named)
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
        Command::Report { by, format, depth } => {
            let by = match by {
                By::Owner => Grouping::Owner,
                By::Environment => Grouping::Environment,
                By::Criticality => Grouping::Criticality,
                By::Ou => Grouping::Ou,
            };
            if depth.is_some() && by != Grouping::Ou {
                bail!("--depth cuts OU paths: use it with --by ou");
            }
            let snapshot = posture_report::load(&posture_store(&config, &clients))
                .await
                .with_context(|| format!("reading the posture counts from {}", config.cache_table))?;
            let now = now_epoch_seconds();
            let report = posture_report::report(&snapshot, by, depth.map(usize::from), now);
            let on_terminal = std::io::stdout().is_terminal();
            match format.unwrap_or(if on_terminal { Format::Table } else { Format::Csv }) {
                Format::Table => print!("{}", posture_report::table(&report, now)),
                Format::Csv => {
                    eprint!("{}", posture_report::describe(&report, now));
                    print!("{}", posture_report::csv(&report));
                }
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            if report.pass.is_none() {
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
            // The refresher's own loop: the warm-up from the walk beside the pass, and passes
            // repeated while findings stay Partial and progress is made, until the deadline.
            let refresher = Refresher::from_clients(&config, &clients);
            let run = refresher.complete(&accounts, deadline, &progress).await;
            if let Some(warm) = &run.warm {
                eprintln!(
                    "directory warmed from the OU tree: {} of {} accounts looked up ({} already cached, {} failed, {} not reached)",
                    warm.cached, warm.accounts, warm.already_cached, warm.failed, warm.not_reached
                );
            }
            let total = run.sweep;
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
        Command::Redrive { .. } => unreachable!("redrive returned above: it needs no enricher configuration"),
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
    println!("  of the new hub       {}", r.examined_v2);
    println!("GetFindings(V2) calls  {}", r.get_findings_calls);
    println!(
        "BatchUpdateFindings    {} accepted ({} sent) against the bound Σ⌈n/100⌉ = {}",
        r.writes.updates.findings_per_call.len(),
        r.writes.updates.calls,
        r.writes.minimum_calls
    );
    println!(
        "BatchUpdateFindingsV2  {} accepted against the bound {}",
        r.writes.updates_v2.findings_per_call.len(),
        r.writes.minimum_calls_v2
    );
    println!("events published       {} ({} failed)", r.writes.events.published, r.writes.events.failed);
    match (&r.stopped, &r.resume_token) {
        (None, _) => println!("remaining              none: every active finding was examined"),
        (Some(why), _) => println!("remaining              not examined yet ({why}); run the sweep again"),
    }
}

/// The enricher's configuration: the deployed function's environment with `--stack`, else the
/// process environment; one parser either way.
fn configuration(deployed: Option<&DeployedStack>) -> Result<EnricherConfig> {
    match deployed {
        Some(stack) => EnricherConfig::from_vars(&map_vars(&stack.enricher_environment)).with_context(|| {
            format!(
                "the enricher's configuration in stack {} ({})",
                stack.name,
                stack.resources[stack::ENRICHER_FUNCTION]
            )
        }),
        None => EnricherConfig::from_env().context("reading the enricher's configuration (or give --stack NAME)"),
    }
}

/// The doctor's names given on the command line.
struct NamedByHand {
    rule_prefix: Option<String>,
    schedule_rule: Option<String>,
    pipe: Option<String>,
}

/// The rules, schedules and pipe the doctor checks: the deployed stack's resources, else (or
/// where given) the names on the command line.
fn doctor_targets(deployed: Option<&DeployedStack>, named: NamedByHand) -> Targets {
    let from_stack = |id: &str| deployed.and_then(|d| d.optional(id)).map(str::to_owned);
    let findings_rules = match (named.rule_prefix, deployed) {
        (Some(prefix), _) => Some(FindingsRules::Prefix(prefix)),
        (None, Some(stack)) => Some(FindingsRules::Named(
            stack::FINDINGS_RULES.iter().filter_map(|id| stack.optional(id)).map(str::to_owned).collect(),
        )),
        (None, None) => None,
    };
    let pipe = match named.pipe {
        Some(name) => Some(PipeTarget { name, stream: None, function: None }),
        None => from_stack(stack::ENRICHER_PIPE).map(|name| PipeTarget {
            name,
            stream: from_stack(stack::FINDINGS_STREAM),
            function: from_stack(stack::ENRICHER_FUNCTION),
        }),
    };
    Targets {
        findings_rules,
        schedule_rule: named.schedule_rule.or_else(|| from_stack(stack::REFRESHER_SCHEDULE)),
        investigator_schedule: from_stack(stack::INVESTIGATOR_SCHEDULE),
        pipe,
        ttl_attribute: TTL_ATTRIBUTE.to_owned(),
        ..Targets::default()
    }
}

fn print_redrive(report: &RedriveReport, queue_url: &str) {
    for letter in &report.letters {
        let verdict = match letter.disposition {
            Disposition::Redriven => "sent, deleted",
            Disposition::RedrivenExpiredDiscarded => "retained records sent, deleted (--discard-expired)",
            Disposition::Kept => "KEPT",
            Disposition::DryRun => "dry run",
        };
        let lost = letter.records_past_retention.map_or("unknown".to_owned(), |n| n.to_string());
        println!(
            "{} {} {}..{}: batch {} · found {} · sent {} · past retention {lost} · not sent {} · {verdict}{}",
            letter.message_id,
            letter.shard_id.as_deref().unwrap_or("-"),
            letter.start_sequence_number.as_deref().unwrap_or("-"),
            letter.end_sequence_number.as_deref().unwrap_or("-"),
            letter.batch_size.map_or("?".to_owned(), |n| n.to_string()),
            letter.records_found,
            letter.records_sent,
            letter.records_not_sent,
            letter.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
        );
    }
    println!(
        "{} dead letters from {queue_url}: {} records sent, {} letters deleted, {} kept",
        report.letters.len(),
        report.records_sent(),
        report.deleted(),
        report.kept()
    );
}

fn check_ids(accounts: &[String]) -> Result<()> {
    if let Some(bad) = accounts.iter().find(|a| !is_account_id(a)) {
        bail!("{bad:?} is not a 12-digit AWS account id");
    }
    Ok(())
}
