//! `loadtest`: generate an organization's findings, replay them into a stream, or run the
//! enricher against simulated AWS with the real quotas and report how close it runs to them.
//! See loadtest/README.md.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loadtest::loadgen::{Generator, imported_event, pipe_batch, synthetic_org};
use loadtest::local::harness::LocalRun;
use loadtest::replay::{Replayer, StreamEntry};
use loadtest::simulate::{Mode, Simulation};
use securityhub_enricher::config::QuotaSharing;
use securityhub_enricher::core::rate::Rate;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Load tests for securityhub-enricher")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write generated findings as NDJSON of EventBridge events (one finding per event).
    Generate {
        #[arg(long, default_value_t = 10_000)]
        findings: usize,
        #[arg(long, default_value_t = 5_000)]
        accounts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file; `-` for stdout.
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Put NDJSON events on a Kinesis stream (the real one, or the local stack's), partition key
    /// = the first finding's account, PutRecords within 500 entries and 5 MiB, failed entries
    /// retried with backoff, at the target rate.
    Replay {
        #[arg(long)]
        stream: String,
        #[arg(long)]
        input: PathBuf,
        /// Events per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Write the JSON summary here instead of stdout.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Generated findings through the whole local stack (run under scripts/local-aws): a seeded
    /// organization, Security Hub, Kinesis, one enricher environment per shard, reconciled.
    Local {
        #[arg(long, default_value_t = 2_000)]
        findings: usize,
        #[arg(long, default_value_t = 200)]
        accounts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        shards: usize,
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Warm the cache from the walk of the OU tree first (the stream then writes, and holds
        /// in the pending-writes store when the quota is saturated, instead of deferring a cold
        /// organization); the refresher's drain of the store runs at the end.
        #[arg(long)]
        warm: bool,
        /// Write the JSON summary here instead of stdout.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the enricher in process against simulated AWS with the real quotas.
    Simulate {
        /// `cold`: a fresh deployment, nothing cached, the refresher on its schedule until every
        /// finding is complete. `steady`: every account already cached, as on any later day.
        #[arg(long, value_enum, default_value = "cold")]
        mode: Mode,
        /// Simulated minutes from the end of one refresher pass to the next (cold mode; the
        /// template's RefreshIntervalMinutes). The schedule itself fires every minute.
        #[arg(long, default_value_t = 15.0)]
        sweep_interval_minutes: f64,
        /// Simulated seconds between the refresher's scheduled runs (60, as deployed).
        #[arg(long, default_value_t = 60.0)]
        refresher_schedule_seconds: f64,
        /// `PENDING_WRITE_DELAY_SECONDS` (simulated): coalescing across batches through the
        /// pending-writes store; 0: each batch writes its own findings, as before the store.
        #[arg(long, default_value_t = 60)]
        pending_delay_seconds: u64,
        #[arg(long, default_value_t = 20_000)]
        findings: usize,
        #[arg(long, default_value_t = 5_000)]
        accounts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        shards: usize,
        /// Records per Pipe batch; a batch is also cut at 6 MB of invocation payload. The
        /// default is what 6 MB holds of the generator's findings.
        #[arg(long, default_value_t = loadtest::simulate::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Findings without their bodies, as the simulator had them before its batches were
        /// honest (to compare with figures measured that way; a 6 MB batch then holds 10,000).
        #[arg(long)]
        minimal_findings: bool,
        /// Organizations calls per second for the whole fleet.
        #[arg(long, default_value_t = 2.0)]
        organizations_budget: f64,
        /// Run this many times faster than real time (quotas and latencies scale; results are reported in simulated time).
        #[arg(long, default_value_t = 10.0)]
        time_scale: f64,
        /// Findings entering the stream per second; without it they are all there at the start.
        #[arg(long)]
        rate: Option<f64>,
        /// How the environments divide BatchUpdateFindings' quota (SECURITYHUB_QUOTA_SHARING).
        #[arg(long, default_value = "ledger")]
        quota_sharing: QuotaSharing,
        /// The stream writes findings of unknown accounts `Partial` (and looks each account up)
        /// instead of deferring them to the refresher, as it did before: to measure both ways.
        #[arg(long)]
        partial_writes: bool,
        /// Write the JSON summary here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the SVG report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Compare ways of writing under a burst in a discrete-event model (no enricher code; see
    /// loadtest/README.md): per-batch writes as today, a pending-writes store drained per
    /// account, deferring small groups to the sweep. Prints one JSON summary per design.
    Coalesce {
        #[arg(long, value_enum)]
        design: Vec<loadtest::coalesce::Design>,
        #[arg(long, default_value_t = 20_000)]
        findings: usize,
        #[arg(long, default_value_t = 5_000)]
        accounts: usize,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        shards: usize,
        #[arg(long, default_value_t = loadtest::simulate::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Findings entering the stream per second; without it they are all there at the start.
        #[arg(long)]
        rate: Option<f64>,
        /// The longest a finding waits for its account's group to fill, seconds.
        #[arg(long, default_value_t = 60.0)]
        max_delay_seconds: f64,
        /// The Pipe's MaximumBatchingWindowInSeconds (the template's default is 10).
        #[arg(long, default_value_t = 10.0)]
        batching_window_seconds: f64,
    },
    /// The real refresher's pass over a generated organization's findings, in process on the
    /// in-memory fakes, and the EMF documents its posture counts become at the pass's end: how
    /// many and how large (one with the totals, one per named owner, `other`, `unowned`,
    /// environment and criticality).
    PostureEmf {
        #[arg(long, default_value_t = 20_000)]
        findings: usize,
        #[arg(long, default_value_t = 500)]
        accounts: usize,
        /// Owner teams (by the owner tag); every tenth account has none.
        #[arg(long, default_value_t = 60)]
        owners: usize,
        /// POSTURE_TOP_OWNERS.
        #[arg(long, default_value_t = 20)]
        top_owners: usize,
    },
    /// Peak memory of the pure path on one batch (in a fresh process, so that the generator's
    /// memory is not counted).
    Memory {
        #[arg(long, default_value_t = 10_000)]
        records: usize,
    },
    /// The measured half of `memory`: runs the pure path on a batch file and reports peak RSS.
    #[command(hide = true)]
    MemoryRun {
        #[arg(long)]
        input: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Generate { findings, accounts, seed, out } => generate(findings, accounts, seed, &out),
        Command::Replay { stream, input, rate, json } => replay(&stream, &input, rate, json.as_ref()).await,
        Command::Local { findings, accounts, seed, shards, batch_size, warm, json } => {
            std::env::var("AWS_ENDPOINT_URL")
                .context("AWS_ENDPOINT_URL is not set: run this through scripts/local-aws run -- ...")?;
            let run = LocalRun { findings, accounts, seed, shards, batch_size, warm };
            let summary = run.run(|step| eprintln!("== {step}")).await?;
            write_summary(&summary, json.as_ref())?;
            eprintln!(
                "{} findings: replayed in {:.1} s, enriched in {:.1} s ({:.0}/s; ceiling {:.0}/s); BatchUpdateFindings accepted {} (bound {}), throttled {}; latency p50 {:.0} ms p99 {:.0} ms; lost {}",
                summary.findings,
                summary.replay_seconds,
                summary.enrich_seconds,
                summary.findings_per_second,
                summary.ceiling_findings_per_second,
                summary.accepted_update_calls,
                summary.minimum_update_calls,
                summary.update_throttles,
                summary.latency_ms.p50,
                summary.latency_ms.p99,
                summary.lost
            );
            if summary.findings_pending > 0 {
                let per_finding = |n: u64| n as f64 / summary.findings.max(1) as f64;
                eprintln!(
                    "pending-writes store: {} findings held ({} written by the refresher's drain); {} DynamoDB requests, {} write units, {} read units ({:.2} and {:.2} per finding)",
                    summary.findings_pending,
                    summary.pending_drained_by_refresher,
                    summary.pending_store.requests,
                    summary.pending_store.write_units,
                    summary.pending_store.read_units,
                    per_finding(summary.pending_store.write_units),
                    per_finding(summary.pending_store.read_units),
                );
            }
            if summary.lost > 0 {
                bail!("{} findings were lost", summary.lost);
            }
            Ok(())
        }
        Command::Simulate {
            mode,
            sweep_interval_minutes,
            refresher_schedule_seconds,
            pending_delay_seconds,
            findings,
            accounts,
            seed,
            shards,
            batch_size,
            minimal_findings,
            organizations_budget,
            time_scale,
            rate,
            quota_sharing,
            partial_writes,
            json,
            report,
        } => {
            let simulation = Simulation {
                mode,
                sweep_interval: Duration::from_secs_f64(sweep_interval_minutes * 60.0),
                refresher_schedule: Duration::from_secs_f64(refresher_schedule_seconds),
                pending_delay: Some(Duration::from_secs(pending_delay_seconds)).filter(|d| !d.is_zero()),
                findings,
                accounts,
                seed,
                shards,
                batch_size,
                minimal_findings,
                organizations_budget,
                time_scale,
                produce_rate: rate,
                quota_sharing,
                partial_writes,
                hub_quota: Rate { per_second: 10.0, burst: 30 },
                ..Simulation::default()
            };
            let bar = ProgressBar::new(findings as u64).with_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} findings {per_sec}")
                    .expect("valid template"),
            );
            let progress_bar = bar.clone();
            let summary = simulation.run(move |done| progress_bar.set_position(done as u64)).await;
            bar.finish();
            write_summary(&summary, json.as_ref())?;
            if let Some(path) = &report {
                loadtest::report::write_svg(&summary, path).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let ceiling = if summary.minimum_update_calls == 0 {
                "the stream wrote nothing".to_owned()
            } else {
                format!(
                    "{:.1}% of the {:.0}/s ceiling",
                    summary.ratio_to_ceiling * 100.0,
                    summary.ceiling_findings_per_second
                )
            };
            eprintln!(
                "{} findings in {:.1} s simulated: {:.0}/s = {ceiling}; BatchUpdateFindings accepted {} (bound {}), throttled {}, failed records {}, lost {}",
                summary.findings,
                summary.elapsed_seconds,
                summary.findings_per_second,
                summary.accepted_update_calls,
                summary.minimum_update_calls,
                summary.throttles,
                summary.records_failed,
                summary.lost
            );
            eprintln!(
                "after the stream: {} complete, {} Partial, {} deferred to the refresher: complete findings at {:.1}% of the ceiling",
                summary.complete_after_stream,
                summary.partial_after_stream,
                summary.findings_deferred,
                summary.complete_ratio_to_ceiling * 100.0
            );
            eprintln!(
                "batches: {} (records p50 {:.0}, max {:.0}; {} cut at {} bytes of payload, {:.0} bytes a record); workload bound: {} calls, {:.1} findings/s; complete {:.1} findings/s = {:.3} of it",
                summary.batches,
                summary.batch_records.p50,
                summary.batch_records.max,
                summary.batches_cut_at_payload,
                summary.payload_limit,
                summary.mean_record_payload_bytes,
                summary.workload_bound_calls,
                summary.workload_bound_findings_per_second,
                summary.complete_findings_per_second,
                summary.complete_ratio_to_workload_bound
            );
            if mode == Mode::Cold {
                let until = summary
                    .seconds_until_complete
                    .map_or_else(|| format!("not within {:.0} s", summary.cold_limit_seconds), |s| format!("{s:.0} s"));
                eprintln!(
                    "every finding complete after {until} ({} refresher runs, {} GetFindings, {} BatchUpdateFindings; {:.3} accepted BatchUpdateFindings per complete finding, stream and refresher); the Organizations bound is {:.0} s ({} calls at {}/s); {} Organizations calls made",
                    summary.refresher_runs,
                    summary.sweep.get_findings_calls,
                    summary.sweep.writes.updates.calls,
                    summary.accepted_update_calls_per_complete_finding,
                    summary.organizations_bound_seconds,
                    summary.organizations_calls_needed,
                    organizations_budget,
                    summary.organizations_calls
                );
            }
            if summary.lost > 0 {
                bail!("{} findings were lost", summary.lost);
            }
            if mode == Mode::Cold && summary.seconds_until_complete.is_none() {
                bail!("findings were left Partial");
            }
            Ok(())
        }
        Command::Coalesce {
            design,
            findings,
            accounts,
            seed,
            shards,
            batch_size,
            rate,
            max_delay_seconds,
            batching_window_seconds,
        } => {
            use loadtest::coalesce::{Design, Model};
            let designs = if design.is_empty() {
                vec![Design::PerBatch, Design::PendingStore, Design::DeferToSweep]
            } else {
                design
            };
            for design in designs {
                let model = Model {
                    design,
                    findings,
                    accounts,
                    seed,
                    shards,
                    batch_size,
                    produce_rate: rate,
                    max_delay: max_delay_seconds,
                    batching_window: batching_window_seconds,
                    ..Model::default()
                };
                let summary = model.run();
                println!("{}", serde_json::to_string_pretty(&summary)?);
                eprintln!(
                    "{:?}: {} findings in {:.0} s = {:.1}/s, {:.3} of the workload bound ({:.1}/s, {} calls); BatchUpdateFindings {} ({} at the delay bound), GetFindings {}, latency p50 {:.2} s, longest wait {:.0} s, lost {}",
                    design,
                    summary.findings,
                    summary.elapsed_seconds,
                    summary.complete_findings_per_second,
                    summary.ratio_to_workload_bound,
                    summary.workload_bound_findings_per_second,
                    summary.workload_bound_calls,
                    summary.update_calls,
                    summary.calls_at_delay_bound,
                    summary.get_findings_calls,
                    summary.latency_seconds.p50,
                    summary.max_wait_seconds,
                    summary.lost
                );
            }
            Ok(())
        }
        Command::PostureEmf { findings, accounts, owners, top_owners } => {
            let figure = loadtest::posture::pass_emf(findings, accounts, owners, top_owners).await;
            println!(
                "a pass over {} findings of {} accounts ({} owners, top {} named, {} unowned): {} EMF documents, {} bytes, the largest {} bytes, at most {} metrics a document and {} dimensions a set{}",
                figure.findings,
                figure.accounts,
                figure.owners,
                figure.top_owners,
                figure.unowned,
                figure.documents,
                figure.bytes,
                figure.largest_document_bytes,
                figure.most_metrics_in_a_document,
                figure.most_dimensions_in_a_set,
                if loadtest::posture::within_emf_limits(&figure) { "" } else { ": BEYOND EMF'S LIMITS" }
            );
            Ok(())
        }
        Command::Memory { records } => memory(records),
        Command::MemoryRun { input } => memory_run(&input),
    }
}

fn generate(findings: usize, accounts: usize, seed: u64, out: &str) -> Result<()> {
    let mut writer: Box<dyn Write> = if out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {out}"))?))
    };
    let mut generator = Generator::new(accounts, seed);
    for i in 0..findings {
        let (_, finding) = generator.finding();
        serde_json::to_writer(&mut writer, &imported_event(&[finding], i))?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

async fn replay(stream: &str, input: &PathBuf, rate: f64, json: Option<&PathBuf>) -> Result<()> {
    let file =
        std::io::BufReader::new(std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?);
    let mut entries = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line).with_context(|| format!("line {} is not JSON", n + 1))?;
        entries.push(StreamEntry::for_event(&event));
    }
    let sdk = securityhub_enricher::adapters::sdk::load_sdk_config().await;
    let replayer = Replayer::new(aws_sdk_kinesis::Client::new(&sdk), stream).at_rate(rate);
    let bar = ProgressBar::new(entries.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} events {per_sec}")
            .expect("valid template"),
    );
    let progress_bar = bar.clone();
    let started = std::time::Instant::now();
    let stats = replayer.put(&entries, move |put| progress_bar.set_position(put as u64)).await?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "stream": stream,
        "stats": stats,
        "elapsed_seconds": seconds,
        "events_per_second": stats.put as f64 / seconds,
        "target_rate": rate,
    });
    write_summary(&summary, json)?;
    eprintln!(
        "{} of {} events put in {seconds:.1} s ({:.0}/s); {} entries retried, {} requests retried, {} too large",
        stats.put,
        stats.events,
        stats.put as f64 / seconds,
        stats.entries_retried,
        stats.requests_retried,
        stats.too_large
    );
    if stats.too_large > 0 {
        bail!("{} events are over Kinesis' 1 MiB record limit and were not put", stats.too_large);
    }
    Ok(())
}

/// The run's JSON summary to `path`, or to stdout.
fn write_summary(summary: &impl serde::Serialize, path: Option<&PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)?;
    match path {
        Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

/// Peak resident memory (VmHWM) in MB, from /proc; the harness runs on Linux like Lambda.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn memory(records: usize) -> Result<()> {
    // The smallest findings products emit; a 6 MB Pipe batch of realistic 2–10 KB findings
    // holds about 1,000 records, so 10,000 records is the worst case by count.
    let batch = pipe_batch(&mut Generator::new(5000, 1).minimal(), records);
    let path = std::env::temp_dir().join(format!("loadtest-memory-{}.json", std::process::id()));
    std::fs::write(&path, &batch)?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["memory-run", "--input"])
        .arg(&path)
        .output()
        .context("running the measured process")?;
    std::fs::remove_file(&path).ok();
    if !output.status.success() {
        bail!("the measured process failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn memory_run(input: &PathBuf) -> Result<()> {
    let org = synthetic_org(5000, 1);
    let enrichments = loadtest::pipeline::enrichments_for(&org);
    let bytes = std::fs::read(input)?;
    let batch_mb = bytes.len() as f64 / 1048576.0;
    let before = peak_rss_mb().unwrap_or_default();
    let batch = serde_json::from_slice(&bytes)?;
    drop(bytes);
    let out = loadtest::pipeline::run_parsed(batch, &enrichments);
    let after = peak_rss_mb().unwrap_or_default();
    println!(
        "{{\"batch_mb\": {batch_mb:.2}, \"findings\": {}, \"requests\": {}, \"rss_mb_with_batch\": {before:.1}, \"peak_rss_mb\": {after:.1}}}",
        out.findings, out.requests
    );
    Ok(())
}
