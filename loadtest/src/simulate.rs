//! The load-test simulator: the real enricher pipeline (handler, directory, updater) in
//! process, against simulated AWS with the real quotas (BatchUpdateFindings 10/s burst 30 per
//! account and region, an Organizations budget) and configurable latency. It measures
//! throughput against the ceiling those quotas set, and reconciles every generated finding
//! against the updates Security Hub saw.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use securityhub_enricher::config::QuotaSharing;
use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::cache_entry::CacheTimes;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::FindingId;
use securityhub_enricher::core::rate::{Rate, share_of};
use securityhub_enricher::limits::Limiter;
use securityhub_enricher::ports::metadata::{AccountSource, LookupError};
use securityhub_enricher::service::quota_share::QuotaShare;

use crate::fakes::directory::{InMemoryStore, StaticSource};
use crate::fakes::enricher::EnricherBuilder;
use crate::fakes::hub::InMemoryHub;
use crate::fakes::ledger::InMemoryLedger;
use crate::loadgen::{Generator, imported_event, synthetic_org};

#[derive(Debug, Clone)]
pub struct Simulation {
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    /// Kinesis shards; one enricher environment reads each (ParallelizationFactor 1).
    pub shards: usize,
    /// Records per batch (the Pipe's BatchSize; a 6 MB batch holds ~10,000 small records).
    pub batch_size: usize,
    /// Security Hub's quota for the whole region, shared by the environments.
    pub hub_quota: Rate,
    /// The Organizations calls per second the whole fleet may make.
    pub organizations_budget: f64,
    pub organizations_latency: Duration,
    pub hub_latency: Duration,
    /// Runs every quota and latency this many times faster; results are scaled back.
    pub time_scale: f64,
    /// Findings produced per second (simulated time); `None` puts them all in the stream at once.
    pub produce_rate: Option<f64>,
    /// How the environments divide the quota, as `SECURITYHUB_QUOTA_SHARING` does.
    pub quota_sharing: QuotaSharing,
    /// Time one call to the quota ledger takes.
    pub ledger_latency: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            findings: 20_000,
            accounts: 5_000,
            seed: 1,
            shards: 4,
            batch_size: 10_000,
            hub_quota: securityhub_enricher::config::SECURITYHUB_QUOTA,
            organizations_budget: 2.0,
            organizations_latency: Duration::from_millis(80),
            hub_latency: Duration::from_millis(60),
            time_scale: 10.0,
            produce_rate: None,
            quota_sharing: QuotaSharing::Ledger,
            ledger_latency: Duration::from_millis(10),
        }
    }
}

/// Organizations calls a cold lookup makes (DescribeAccount, ListParents, ListTagsForResource,
/// GetAlternateContact; OU descriptions are shared and cached).
const CALLS_PER_LOOKUP: f64 = 4.0;

/// Organizations as the fleet sees it: a budget of calls per second, latency per call.
struct BudgetedOrganizations {
    inner: StaticSource,
    budget: Limiter,
    latency: Duration,
    /// When each lookup finished, for the time series.
    finished: Mutex<Vec<Instant>>,
}

#[async_trait]
impl AccountSource for BudgetedOrganizations {
    async fn lookup(&self, account_id: &str, deadline: Instant) -> Result<AccountRecord, LookupError> {
        for _ in 0..CALLS_PER_LOOKUP as usize {
            self.budget.acquire(deadline).await.map_err(|_| LookupError::Budget { operation: "DescribeAccount" })?;
            tokio::time::timeout_at(deadline, tokio::time::sleep(self.latency))
                .await
                .map_err(|_| LookupError::Budget { operation: "DescribeAccount" })?;
        }
        let record = self.inner.lookup(account_id, deadline).await;
        self.finished.lock().unwrap().push(Instant::now());
        record
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SecondSample {
    pub second: u64,
    pub findings_enriched: usize,
    pub update_calls: usize,
    pub throttles: usize,
    pub cache_misses: usize,
    pub records_failed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    pub shards: usize,
    /// `ledger` or `static` (`SECURITYHUB_QUOTA_SHARING`).
    pub quota_sharing: String,
    pub time_scale: f64,
    /// Simulated seconds (wall time × time scale).
    pub elapsed_seconds: f64,
    pub findings_per_second: f64,
    /// What BatchUpdateFindings' quota allows for this mix: findings ÷ (Σ⌈n/100⌉ ÷ rate).
    pub ceiling_findings_per_second: f64,
    pub ratio_to_ceiling: f64,
    pub findings_enriched: usize,
    pub findings_enriched_partial: usize,
    /// BatchUpdateFindings calls sent, throttled ones included.
    pub update_calls: usize,
    /// Calls Security Hub accepted: to compare with `minimum_update_calls`.
    pub accepted_update_calls: usize,
    /// The Σ⌈n/100⌉ bound over every batch.
    pub minimum_update_calls: usize,
    pub throttles: usize,
    pub records_failed: usize,
    pub batches: usize,
    pub lost: usize,
    /// API calls per 1,000 findings, by operation (Organizations estimated per lookup).
    pub calls_per_1000_findings: BTreeMap<String, f64>,
    /// From entering the stream to the update landing, simulated milliseconds.
    pub latency_ms: Percentiles,
    pub series: Vec<SecondSample>,
}

pub fn percentiles(mut values: Vec<f64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: *values.last().unwrap() }
}

struct Record {
    id: String,
    /// When the record entered the stream, wall time since start.
    enters: Duration,
    data: String,
}

impl Simulation {
    pub async fn run(&self, progress: impl Fn(usize) + Send + Sync) -> Summary {
        use base64::Engine as _;
        let scale = self.time_scale.max(0.001);
        let org = synthetic_org(self.accounts, self.seed);
        let mut generator = Generator::new(self.accounts, self.seed).minimal();
        let mut shards: Vec<VecDeque<Record>> = (0..self.shards).map(|_| VecDeque::new()).collect();
        let mut expected = Vec::with_capacity(self.findings);
        for i in 0..self.findings {
            let (account, finding) = generator.finding();
            let id = FindingId {
                id: finding["Id"].as_str().unwrap_or_default().to_owned(),
                product_arn: finding["ProductArn"].as_str().unwrap_or_default().to_owned(),
            };
            let enters = match self.produce_rate {
                Some(rate) => Duration::from_secs_f64(i as f64 / rate / scale),
                None => Duration::ZERO,
            };
            expected.push((id, enters));
            let data = base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&imported_event(&[finding], i)).unwrap_or_default());
            shards[account % self.shards].push_back(Record {
                id: format!("shard-{}:{i:012}", account % self.shards),
                enters,
                data,
            });
        }

        let scaled = move |d: Duration| d.div_f64(scale);
        let hub = Arc::new(
            InMemoryHub::with_quota(Rate {
                per_second: self.hub_quota.per_second * scale,
                burst: self.hub_quota.burst,
            })
            .with_latency(scaled(self.hub_latency)),
        );
        let store: Arc<InMemoryStore> = Arc::default();
        let organizations = Arc::new(BudgetedOrganizations {
            inner: StaticSource::new(org),
            budget: Limiter::new(Rate { per_second: self.organizations_budget * scale, burst: 5 }),
            latency: scaled(self.organizations_latency),
            finished: Mutex::default(),
        });
        let times = CacheTimes {
            fresh: Duration::from_secs(86_400),
            negative: Duration::from_secs(3600),
            unknown_contact: Duration::from_secs(900),
            stale_grace: Duration::from_secs(604_800),
            memory: Duration::from_secs(300),
            memory_capacity: 20_000,
        };
        let pool = Rate { per_second: self.hub_quota.per_second * scale, burst: self.hub_quota.burst };
        let static_share = share_of(pool, self.shards as u32);
        let ledger = Arc::new(InMemoryLedger::with_latency(scaled(self.ledger_latency)));

        let started = Instant::now();
        let samples: Arc<Mutex<BTreeMap<u64, SecondSample>>> = Arc::default();
        let totals: Arc<Mutex<Summary>> = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let progress = Arc::new(progress);
        let mut tasks = Vec::new();
        for (shard, mut queue) in shards.into_iter().enumerate() {
            let quota = match self.quota_sharing {
                QuotaSharing::Static => QuotaShare::fixed(static_share),
                QuotaSharing::Ledger => QuotaShare::shared(
                    pool,
                    static_share,
                    ledger.clone(),
                    format!("shard-{shard}"),
                    scaled(securityhub_enricher::wiring::QUOTA_RENEWAL),
                ),
            };
            let enricher = EnricherBuilder::new()
                .store(store.clone())
                .source(organizations.clone())
                .cache_times(times.clone())
                .lookups(8, scaled(Duration::from_secs(5)))
                .hub(hub.clone())
                .quota(quota)
                .backoff(scaled(Duration::from_millis(100)), 8)
                .deadline_margin(Duration::ZERO)
                .build();
            let (samples, totals, done, progress) = (samples.clone(), totals.clone(), done.clone(), progress.clone());
            let batch_size = self.batch_size;
            tasks.push(async move {
                while !queue.is_empty() {
                    let now = started.elapsed();
                    let ready = queue.iter().take(batch_size).take_while(|r| r.enters <= now).count();
                    if ready == 0 {
                        tokio::time::sleep(queue[0].enters - now).await;
                        continue;
                    }
                    let batch: Vec<Record> = queue.drain(..ready).collect();
                    let body: Vec<Value> = batch
                        .iter()
                        .map(|r| json!({"eventID": r.id, "data": r.data, "approximateArrivalTimestamp": 0.0}))
                        .collect();
                    let incoming: IncomingBatch =
                        serde_json::from_value(Value::Array(body)).expect("well-formed batch");
                    let deadline = Instant::now() + scaled(Duration::from_secs(900));
                    let report = enricher.handle(incoming, deadline).await;
                    let finished = started.elapsed();
                    let failed: std::collections::HashSet<String> =
                        report.response.batch_item_failures.iter().filter_map(|f| f.item_identifier.clone()).collect();
                    // Like Lambda: failed records are delivered again, first.
                    let retry: Vec<Record> = batch.into_iter().filter(|r| failed.contains(&r.id)).collect();
                    for record in retry.into_iter().rev() {
                        queue.push_front(record);
                    }
                    // Updates and lookups are sampled where they happen (below); failed records
                    // when their batch ends.
                    let second = (finished.as_secs_f64() * scale) as u64;
                    let mut samples = samples.lock().unwrap();
                    let sample = samples.entry(second).or_insert_with(|| SecondSample { second, ..Default::default() });
                    sample.records_failed += report.tally.records_failed;
                    let mut t = totals.lock().unwrap();
                    t.batches += 1;
                    t.findings_enriched += report.tally.findings_enriched;
                    t.findings_enriched_partial += report.tally.findings_enriched_partial;
                    t.update_calls += report.writes.updates.calls;
                    t.accepted_update_calls += report.writes.updates.findings_per_call.len();
                    t.minimum_update_calls += report.writes.minimum_calls;
                    t.throttles += report.writes.updates.throttled;
                    t.records_failed += report.tally.records_failed;
                    let n = done.fetch_add(
                        report.tally.records_in - report.tally.records_failed,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    progress(n + report.tally.records_in - report.tally.records_failed);
                }
            });
        }
        // One task: the environments interleave at their awaits, which is all a simulation
        // bound by quotas and latency needs (and it keeps the handler's futures un-spawned).
        futures::future::join_all(tasks).await;
        let elapsed = started.elapsed().as_secs_f64() * scale;

        let updated: HashMap<FindingId, bool> = hub
            .findings
            .lock()
            .unwrap()
            .iter()
            .map(|(id, payload)| {
                (id.clone(), payload.fields.contains_key(securityhub_enricher::core::enrich::keys::FINDING_ENRICHED))
            })
            .collect();
        let lost = expected.iter().filter(|(id, _)| !updated.get(id).copied().unwrap_or(false)).count();
        let mut samples = std::mem::take(&mut *samples.lock().unwrap());
        fn sample_at(
            samples: &mut BTreeMap<u64, SecondSample>,
            started: Instant,
            scale: f64,
            at: Instant,
        ) -> &mut SecondSample {
            let second = ((at - started).as_secs_f64() * scale) as u64;
            samples.entry(second).or_insert_with(|| SecondSample { second, ..Default::default() })
        }
        for call in hub.call_log.lock().unwrap().iter() {
            let sample = sample_at(&mut samples, started, scale, call.at);
            sample.update_calls += 1;
            sample.findings_enriched += call.applied;
            sample.throttles += usize::from(call.throttled);
        }
        for &at in organizations.finished.lock().unwrap().iter() {
            sample_at(&mut samples, started, scale, at).cache_misses += 1;
        }
        // Quiet seconds are zeros, not gaps a plot would bridge.
        let last = samples.keys().next_back().copied().unwrap_or_default();
        for second in 0..=last {
            samples.entry(second).or_insert_with(|| SecondSample { second, ..Default::default() });
        }
        let first_updated = hub.first_updated.lock().unwrap();
        let latencies: Vec<f64> = expected
            .iter()
            .filter_map(|(id, enters)| {
                first_updated.get(id).map(|at| (*at - (started + *enters)).as_secs_f64() * 1000.0 * scale)
            })
            .collect();
        let mut summary = std::mem::take(&mut *totals.lock().unwrap());
        summary.findings = self.findings;
        summary.accounts = self.accounts;
        summary.seed = self.seed;
        summary.shards = self.shards;
        summary.quota_sharing = format!("{:?}", self.quota_sharing).to_lowercase();
        summary.time_scale = scale;
        summary.elapsed_seconds = elapsed;
        summary.findings_per_second = self.findings as f64 / elapsed;
        summary.ceiling_findings_per_second =
            self.findings as f64 / (summary.minimum_update_calls as f64 / self.hub_quota.per_second);
        summary.ratio_to_ceiling = summary.findings_per_second / summary.ceiling_findings_per_second;
        summary.lost = lost;
        let per_1000 = |n: f64| n * 1000.0 / self.findings as f64;
        let lookups = organizations.inner.total_lookups() as f64;
        summary.calls_per_1000_findings = BTreeMap::from([
            ("SecurityHub.BatchUpdateFindings".to_owned(), per_1000(summary.update_calls as f64)),
            ("Organizations (estimated: 3 per lookup)".to_owned(), per_1000(lookups * 3.0)),
            ("Account.GetAlternateContact".to_owned(), per_1000(lookups)),
            (
                "DynamoDB.BatchGetItem".to_owned(),
                per_1000(store.get_calls.load(std::sync::atomic::Ordering::Relaxed) as f64),
            ),
            (
                "DynamoDB.UpdateItem (quota ledger)".to_owned(),
                per_1000(ledger.calls.load(std::sync::atomic::Ordering::Relaxed) as f64),
            ),
            (
                "DynamoDB.BatchWriteItem".to_owned(),
                per_1000(store.put_calls.load(std::sync::atomic::Ordering::Relaxed) as f64),
            ),
        ]);
        summary.latency_ms = percentiles(latencies);
        summary.series = samples.into_values().collect();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run, both ways of sharing the quota: nothing lost, the bound met, and the
    /// per-second series adds up to the totals. (Throughput is the harness's to measure.)
    #[tokio::test]
    async fn a_small_simulation_reconciles_and_its_series_adds_up() {
        for quota_sharing in [QuotaSharing::Ledger, QuotaSharing::Static] {
            let simulation = Simulation {
                findings: 600,
                accounts: 60,
                seed: 5,
                shards: 3,
                batch_size: 150,
                time_scale: 50.0,
                quota_sharing,
                ..Simulation::default()
            };
            let summary = simulation.run(|_| {}).await;
            assert_eq!(summary.lost, 0, "{quota_sharing:?}");
            assert_eq!(summary.records_failed, 0);
            assert_eq!(summary.accepted_update_calls, summary.minimum_update_calls);
            assert_eq!(summary.series.iter().map(|s| s.update_calls).sum::<usize>(), summary.update_calls);
            assert_eq!(summary.series.iter().map(|s| s.throttles).sum::<usize>(), summary.throttles);
            assert!(summary.series.iter().enumerate().all(|(i, s)| s.second == i as u64), "no gaps");
            assert!(summary.latency_ms.p50 > 0.0 && summary.latency_ms.p50 <= summary.latency_ms.max);
        }
    }
}
