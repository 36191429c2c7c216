//! The load-test harness's local target: generated findings through the whole local stack
//! (a seeded organization in moto, findings imported into the emulator, replayed into
//! Kinesis, read back in Pipe batches by one enricher environment per shard, the real
//! handler and adapters), then every finding reconciled against what Security Hub holds.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::findings::import_findings;
use super::org::{OrgSpec, seed_organization};
use super::pipe::LocalPipe;
use super::settings::LocalSettings;
use super::{LocalError, control_request, create_table, sdk_config_for};
use crate::batches::{after_response, failed_ids};
use crate::loadgen::{Generator, imported_event};
use crate::replay::{ReplayStats, Replayer, StreamEntry};
use crate::simulate::{Percentiles, percentiles};
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::ports::pending::StoreUsage;
use securityhub_enricher::service::directory::WarmScope;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::wiring::{Clients, organizations_source};

#[derive(Debug, Clone)]
pub struct LocalRun {
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    pub shards: usize,
    pub batch_size: usize,
    /// Warm the cache from the walk of the OU tree before the stream, so the stream writes
    /// (and, when the quota is saturated, holds in the pending-writes store) instead of
    /// deferring a cold organization to the refresher; the refresher's drain runs at the end.
    pub warm: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LocalSummary {
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    pub shards: usize,
    pub batch_size: usize,
    /// The AWS account of the local stack the run used.
    pub stack_account: String,
    pub replay: ReplayStats,
    pub replay_seconds: f64,
    /// From the first batch read to the last handled.
    pub enrich_seconds: f64,
    pub findings_per_second: f64,
    /// What BatchUpdateFindings' 10 requests/s allow for this mix.
    pub ceiling_findings_per_second: f64,
    pub batches: usize,
    /// Records reported failed and delivered again.
    pub redeliveries: usize,
    pub findings_enriched: usize,
    pub findings_enriched_partial: usize,
    /// Findings the stream left to the refresher (their accounts unknown and queued; the
    /// harness runs no refresher, so they are counted here, not as lost).
    pub findings_deferred: usize,
    /// Findings the batches held in the pending-writes store.
    pub findings_pending: usize,
    /// Of them, written by the refresher's drain after the stream (the rest by the enrichers').
    pub pending_drained_by_refresher: usize,
    /// The pending-writes store's DynamoDB requests and capacity units (holds, the enrichers'
    /// drains and the refresher's), as the adapter sizes them.
    pub pending_store: StoreUsage,
    pub accepted_update_calls: usize,
    pub minimum_update_calls: usize,
    pub update_throttles: usize,
    /// SDK calls per 1,000 findings, by service and operation (replay and setup excluded).
    pub calls_per_1000_findings: BTreeMap<String, f64>,
    /// From the record's arrival in Kinesis to its batch being handled.
    pub latency_ms: Percentiles,
    /// Generated findings that Security Hub does not hold as enriched at the end.
    pub lost: usize,
}

const CACHE_TABLE: &str = "loadtest-cache";
const STREAM: &str = "loadtest-findings";
/// A failed record is delivered again at most this many times, as the Pipe's retry policy would.
const DELIVERIES: usize = 5;

impl LocalRun {
    /// Runs on the stack that `scripts/local-aws` started, in a fresh account of it.
    pub async fn run(&self, progress: impl Fn(&str)) -> Result<LocalSummary, LocalError> {
        let stack_account = format!("{:012}", rand::random_range(200_000_000_000u64..999_999_999_999));
        let sdk = sdk_config_for(&stack_account).await?;
        progress(&format!("seeding an organization of {} accounts in {stack_account}", self.accounts));
        let org = seed_organization(
            &aws_sdk_organizations::Client::new(&sdk),
            &aws_sdk_account::Client::new(&sdk),
            &OrgSpec { accounts: self.accounts, depth: 3, fanout: 3, seed: self.seed },
        )
        .await?;
        create_table(&aws_sdk_dynamodb::Client::new(&sdk), CACHE_TABLE, "AccountId").await?;

        // The generator's accounts are synthetic; moto picks its own ids, so each finding is
        // moved to the seeded account of the same rank (the Zipf-like skew is kept).
        let mut generator = Generator::new(self.accounts, self.seed);
        let findings: Vec<Value> = (0..self.findings)
            .map(|_| {
                let (rank, mut finding) = generator.finding();
                let account = &org.accounts[rank % org.accounts.len()];
                finding["AwsAccountId"] = json!(account.id);
                finding["AwsAccountName"] = json!(account.name);
                finding
            })
            .collect();
        progress(&format!("importing {} findings into Security Hub", findings.len()));
        import_findings(&aws_sdk_securityhub::Client::new(&sdk), &findings).await?;

        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let pipe = LocalPipe::create(kinesis.clone(), STREAM, self.shards as i32).await?;
        let entries: Vec<StreamEntry> = findings
            .iter()
            .enumerate()
            .map(|(i, f)| StreamEntry::for_event(&imported_event(std::slice::from_ref(f), i)))
            .collect();
        progress(&format!("replaying {} events into Kinesis ({} shards)", entries.len(), self.shards));
        let replay_started = std::time::Instant::now();
        let replay =
            Replayer::new(kinesis, STREAM).put(&entries, |_| {}).await.map_err(|e| LocalError::new("replay", e))?;
        let replay_seconds = replay_started.elapsed().as_secs_f64();

        let calls = ApiCalls::default();
        // Everything not named here as the enricher would read it, defaults included.
        let config = LocalSettings::deployment(CACHE_TABLE)
            .contact_role_in(&org.management_account)
            .set("CONCURRENT_ENVIRONMENTS", self.shards)
            .enricher()
            .map_err(|e| LocalError::new("configuration", e))?;
        let clients = Clients::for_enricher("enricher", &config, &sdk, &calls).await;
        if self.warm {
            progress("warming the cache from the walk of the OU tree");
            // The local stack has no Organizations quota: walk at 20 calls/s, not 1.
            let warm_config = LocalSettings::deployment(CACHE_TABLE)
                .contact_role_in(&org.management_account)
                .set("ORGANIZATIONS_RPS", 20)
                .set("ORGANIZATIONS_BURST", 20)
                .enricher()
                .map_err(|e| LocalError::new("configuration", e))?;
            let warm_clients = Clients::for_enricher("warm", &warm_config, &sdk, &ApiCalls::default()).await;
            let walk = organizations_source(&warm_config, &warm_clients);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
            let report = Enricher::from_clients(&warm_config, &warm_clients)
                .directory
                .warm(&walk, WarmScope::Everything, deadline)
                .await
                .map_err(|e| LocalError::new("warm", e))?;
            progress(&format!("{} of {} accounts cached", report.cached, report.accounts));
        }

        progress("enriching: one environment per shard");
        let started = std::time::Instant::now();
        let mut by_shard: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
        for batch in pipe.read_batches(self.batch_size).await? {
            let shard =
                batch[0]["eventID"].as_str().unwrap_or_default().split(':').next().unwrap_or_default().to_owned();
            by_shard.entry(shard).or_default().push(batch);
        }
        let environments = by_shard.into_values().map(|batches| {
            // Each environment starts cold, with its own memory cache and quota claim.
            let enricher = Enricher::from_clients(&config, &clients);
            async move {
                let mut out = Outcome::default();
                for batch in batches {
                    let mut records = batch;
                    for _ in 0..DELIVERIES {
                        let incoming: IncomingBatch = serde_json::from_value(Value::Array(records.clone()))
                            .map_err(|e| LocalError::new("Pipe batch", e))?;
                        let report =
                            enricher.handle(incoming, tokio::time::Instant::now() + Duration::from_secs(300)).await;
                        let failed = failed_ids(&report.response.batch_item_failures);
                        let handled = securityhub_enricher::core::time::since_epoch().as_secs_f64();
                        let (done, again) = after_response(records, &failed, |r: &Value| {
                            r["eventID"].as_str().unwrap_or_default().to_owned()
                        });
                        for record in &done {
                            let arrival = record["approximateArrivalTimestamp"].as_f64().unwrap_or(handled);
                            out.latencies.push((handled - arrival) * 1000.0);
                        }
                        out.batches += 1;
                        // The batch's own findings written, and waiting ones its drain wrote.
                        out.enriched += report.tally.findings_enriched + report.pending.drained.written;
                        out.partial += report.tally.findings_enriched_partial;
                        out.deferred += report.tally.findings_deferred;
                        out.pending += report.tally.findings_pending;
                        out.store += report.pending.store.unwrap_or_default();
                        out.accepted += report.writes.updates.findings_per_call.len();
                        out.bound += report.writes.minimum_calls;
                        out.throttles += report.writes.updates.throttled;
                        if again.is_empty() {
                            break;
                        }
                        out.redeliveries += again.len();
                        records = again;
                    }
                }
                Ok::<Outcome, LocalError>(out)
            }
        });
        let mut total = Outcome::default();
        for outcome in futures::future::join_all(environments).await {
            total.add(outcome?);
        }
        // What waits in the pending-writes store: the refresher's drain, as each of its runs
        // does once the stream has caught up.
        let refresher = Refresher::from_clients(&config, &clients);
        let (pending, writes) = refresher.drain_pending(tokio::time::Instant::now() + Duration::from_secs(300)).await;
        let drained_by_refresher = pending.drained.written;
        total.enriched += drained_by_refresher;
        total.accepted += writes.updates.findings_per_call.len();
        total.bound += writes.minimum_calls;
        total.throttles += writes.updates.throttled;
        total.store += pending.store.unwrap_or_default();
        let enrich_seconds = started.elapsed().as_secs_f64();

        progress("reconciling every finding against Security Hub");
        let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL")
            .map_err(|_| LocalError::new("LOCAL_AWS_EMULATOR_URL", "not set: run under scripts/local-aws"))?;
        let held: Vec<Value> = serde_json::from_str(
            &control_request("GET", &format!("{emulator}/_emulator/findings?account={stack_account}"), None).await?,
        )
        .map_err(|e| LocalError::new("emulator findings", e))?;
        let enriched: HashMap<&str, bool> = held
            .iter()
            .map(|f| {
                let flag = f["UserDefinedFields"]["findingEnriched"].as_str();
                (f["Id"].as_str().unwrap_or_default(), matches!(flag, Some("True" | "Partial")))
            })
            .collect();
        let queued: std::collections::HashSet<String> = {
            use securityhub_enricher::ports::sweep_state::SweepState as _;
            let state = securityhub_enricher::wiring::sweep_state(&config, &clients);
            state.queued().await.map_err(|e| LocalError::new("refresh queue", e))?.into_iter().collect()
        };
        // Neither written nor in the refresher's hands.
        let lost = findings
            .iter()
            .filter(|f| !enriched.get(f["Id"].as_str().unwrap_or_default()).copied().unwrap_or(false))
            .filter(|f| !queued.contains(f["AwsAccountId"].as_str().unwrap_or_default()))
            .count();

        let per_1000 = |n: u64| n as f64 * 1000.0 / self.findings.max(1) as f64;
        Ok(LocalSummary {
            findings: self.findings,
            accounts: self.accounts,
            seed: self.seed,
            shards: self.shards,
            batch_size: self.batch_size,
            stack_account,
            replay,
            replay_seconds,
            enrich_seconds,
            findings_per_second: self.findings as f64 / enrich_seconds,
            ceiling_findings_per_second: self.findings as f64 / (total.bound.max(1) as f64 / 10.0),
            batches: total.batches,
            redeliveries: total.redeliveries,
            findings_enriched: total.enriched,
            findings_enriched_partial: total.partial,
            findings_deferred: total.deferred,
            findings_pending: total.pending,
            pending_drained_by_refresher: drained_by_refresher,
            pending_store: total.store,
            accepted_update_calls: total.accepted,
            minimum_update_calls: total.bound,
            update_throttles: total.throttles,
            calls_per_1000_findings: calls
                .snapshot()
                .into_iter()
                .map(|((service, operation), count)| (format!("{service}.{operation}"), per_1000(count.calls)))
                .collect(),
            latency_ms: percentiles(total.latencies),
            lost,
        })
    }
}

#[derive(Default)]
struct Outcome {
    batches: usize,
    redeliveries: usize,
    enriched: usize,
    partial: usize,
    deferred: usize,
    pending: usize,
    store: StoreUsage,
    accepted: usize,
    bound: usize,
    throttles: usize,
    latencies: Vec<f64>,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.batches += other.batches;
        self.redeliveries += other.redeliveries;
        self.enriched += other.enriched;
        self.partial += other.partial;
        self.deferred += other.deferred;
        self.pending += other.pending;
        self.store += other.store;
        self.accepted += other.accepted;
        self.bound += other.bound;
        self.throttles += other.throttles;
        self.latencies.extend(other.latencies);
    }
}
