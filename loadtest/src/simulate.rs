//! The load-test simulator: the real enricher pipeline (handler, directory, updater) and, in
//! cold mode, the real refresher, in process, against simulated AWS with the real quotas
//! (BatchUpdateFindings 10/s burst 30 per account and region, an Organizations budget) and
//! configurable latency. It measures throughput against the ceiling those quotas set, how many
//! findings that throughput left complete, and in cold mode how long until every finding is
//! complete against the bound the Organizations budget sets; it reconciles every generated
//! finding against what Security Hub holds. Findings carry their bodies (the generator's sizes,
//! calibrated to real ones) and batches are cut as the Pipe cuts them: at the batch size and at
//! Lambda's 6 MB invocation payload, each record base64-encoded in its Pipe envelope.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use securityhub_enricher::config::QuotaSharing;
use securityhub_enricher::core::account::AccountRecord;
use securityhub_enricher::core::cache_entry::{CacheEntry, CacheTimes};
use securityhub_enricher::core::enrich::ENRICHED_COMPLETE;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::fields::keys;
use securityhub_enricher::core::finding::{Finding, FindingId};
use securityhub_enricher::core::quotas::STREAM_BATCH_UPDATE_POOL;
use securityhub_enricher::core::quotas::SWEEP_GET_FINDINGS as SWEEP_GET_FINDINGS_RATE;
use securityhub_enricher::core::rate::{BACKGROUND_PREFIX, Rate, share_of};
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::limits::Limiter;
use securityhub_enricher::ports::metadata::{AccountSource, LookupError, OrganizationWalk, WalkedAccount};
use securityhub_enricher::service::directory::BACKGROUND_LOOKUP_BUDGET;
use securityhub_enricher::service::pending::Coalescer;
use securityhub_enricher::service::quota_share::QuotaShare;
use securityhub_enricher::service::refresh::{Pacing, Refresher};
use securityhub_enricher::service::sweep::{SweepReport, WRITE_MARGIN};

use crate::batches::{INVOCATION_PAYLOAD_LIMIT, PipeSource, StreamRecord, after_response, failed_ids, redeliver};
use crate::fakes::directory::{InMemoryStore, StaticSource};
use crate::fakes::enricher::EnricherBuilder;
use crate::fakes::hub::InMemoryHub;
use crate::fakes::ledger::InMemoryLedger;
use crate::fakes::pending::InMemoryPendingWrites;
use crate::fakes::sweep_state::InMemorySweepState;
use crate::loadgen::{Generator, imported_event, synthetic_org};

/// Records per batch by default: what one 6 MB invocation holds of the generator's findings
/// (about 6.0 KB a record once base64-encoded in its envelope, so about 1,050; the payload limit
/// still cuts a batch that the one-in-a-hundred large findings make heavier).
pub const DEFAULT_BATCH_SIZE: usize = 1_000;

/// What the directory holds when the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fresh deployment: nothing cached. The refresher runs on its schedule (walk of the OU
    /// tree, then the sweep) until every finding is complete.
    Cold,
    /// Any day after the first: every account already in the cache table.
    Steady,
}

#[derive(Debug, Clone)]
pub struct Simulation {
    pub mode: Mode,
    /// Simulated time from the end of one pass over every finding to the next (cold mode;
    /// `REFRESH_INTERVAL_MINUTES`, 15 by default).
    pub sweep_interval: Duration,
    /// How often the refresher's schedule fires (simulated time): every minute, as deployed;
    /// the run lease keeps runs from overlapping.
    pub refresher_schedule: Duration,
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    /// Kinesis shards; one enricher environment reads each (ParallelizationFactor 1).
    pub shards: usize,
    /// Records per batch (the Pipe's BatchSize); a batch is also cut at `payload_limit`.
    pub batch_size: usize,
    /// Bytes of invocation payload a batch may take (Lambda's 6 MB).
    pub payload_limit: usize,
    /// Findings without their bodies (`Generator::minimal`), as the simulator had them before
    /// its batches were honest: only to compare with figures measured that way.
    pub minimal_findings: bool,
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
    /// The stream writes unknown accounts' findings `Partial` (and looks every one up) instead
    /// of deferring them to the refresher: the other side of the README's Partial decision.
    pub partial_writes: bool,
    /// `PENDING_WRITE_DELAY_SECONDS` (simulated): coalescing across batches through the
    /// pending-writes store, drained by the enrichers and by the refresher on its schedule;
    /// `None` (0): each batch writes its own findings, as before.
    pub pending_delay: Option<Duration>,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            mode: Mode::Cold,
            sweep_interval: Duration::from_secs(15 * 60),
            refresher_schedule: Duration::from_secs(60),
            findings: 20_000,
            accounts: 5_000,
            seed: 1,
            shards: 4,
            batch_size: DEFAULT_BATCH_SIZE,
            payload_limit: INVOCATION_PAYLOAD_LIMIT,
            minimal_findings: false,
            hub_quota: securityhub_enricher::config::SECURITYHUB_QUOTA,
            organizations_budget: 2.0,
            organizations_latency: Duration::from_millis(80),
            hub_latency: Duration::from_millis(60),
            time_scale: 10.0,
            produce_rate: None,
            quota_sharing: QuotaSharing::Ledger,
            ledger_latency: Duration::from_millis(10),
            partial_writes: false,
            pending_delay: Some(Duration::from_secs(60)),
        }
    }
}

/// Organizations calls a cold lookup makes (DescribeAccount, ListParents, ListTagsForResource,
/// GetAlternateContact; OU descriptions are shared and cached).
const CALLS_PER_LOOKUP: usize = 4;
/// Calls to complete an account the walk found: ListTagsForResource and GetAlternateContact.
const CALLS_PER_COMPLETION: usize = 2;
/// ListAccountsForParent and ListOrganizationalUnitsForParent pages hold at most 20.
const WALK_PAGE: usize = 20;

/// Organizations as the fleet sees it: a budget of calls per second, latency per call.
struct BudgetedOrganizations {
    inner: StaticSource,
    budget: Limiter,
    latency: Duration,
    /// The pages a walk of the OU tree takes, as `OrganizationsSource::walk` pages it.
    walk_calls: usize,
    /// Calls made, every kind.
    calls: std::sync::atomic::AtomicUsize,
    /// When each lookup finished, for the time series.
    finished: Mutex<Vec<Instant>>,
}

impl BudgetedOrganizations {
    async fn spend(&self, calls: usize, operation: &'static str, deadline: Instant) -> Result<(), LookupError> {
        for _ in 0..calls {
            self.budget.acquire(deadline).await.map_err(|_| LookupError::Budget { operation })?;
            self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::timeout_at(deadline, tokio::time::sleep(self.latency))
                .await
                .map_err(|_| LookupError::Budget { operation })?;
        }
        Ok(())
    }
}

/// The pages of one walk: ListRoots, then per OU (the root included) its accounts (a page per
/// 20, at least one) and its child OUs (a page per 20, at least one).
fn walk_calls(org: &[AccountRecord]) -> usize {
    let mut direct: HashMap<&str, usize> = HashMap::new();
    let mut children: HashMap<&str, std::collections::BTreeSet<&str>> = HashMap::new();
    for record in org {
        if let AccountRecord::Found(meta) = record {
            for (i, ou) in meta.ou_path.iter().enumerate() {
                direct.entry(ou.id.as_str()).or_default();
                if let Some(child) = meta.ou_path.get(i + 1) {
                    children.entry(ou.id.as_str()).or_default().insert(child.id.as_str());
                }
            }
            if let Some(parent) = meta.ou_path.last() {
                *direct.entry(parent.id.as_str()).or_default() += 1;
            }
        }
    }
    let pages = |n: usize| n.div_ceil(WALK_PAGE).max(1);
    1 + direct
        .iter()
        .map(|(ou, accounts)| pages(*accounts) + pages(children.get(ou).map_or(0, |c| c.len())))
        .sum::<usize>()
}

#[async_trait]
impl AccountSource for BudgetedOrganizations {
    async fn lookup(&self, account_id: &str, deadline: Instant) -> Result<AccountRecord, LookupError> {
        self.spend(CALLS_PER_LOOKUP, "DescribeAccount", deadline).await?;
        let record = self.inner.lookup(account_id, deadline).await;
        self.finished.lock().unwrap().push(Instant::now());
        record
    }
}

#[async_trait]
impl OrganizationWalk for BudgetedOrganizations {
    async fn walk(&self, deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError> {
        self.spend(self.walk_calls, "ListAccountsForParent", deadline).await?;
        self.inner.walk(deadline).await
    }

    async fn complete(&self, account: WalkedAccount, deadline: Instant) -> Result<AccountRecord, LookupError> {
        self.spend(CALLS_PER_COMPLETION, "ListTagsForResource", deadline).await?;
        let record = self.inner.complete(account, deadline).await;
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
    /// `cold` or `steady`.
    pub mode: String,
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
    /// What BatchUpdateFindings' quota allows when findings are grouped per batch, as the
    /// enricher groups them today: findings ÷ (Σ over batches and accounts of ⌈n/100⌉ ÷ rate).
    pub ceiling_findings_per_second: f64,
    pub ratio_to_ceiling: f64,
    /// Of the generated findings, those Security Hub holds complete (`findingEnriched=True`)
    /// and `Partial` once the stream has been through them all.
    pub complete_after_stream: usize,
    pub partial_after_stream: usize,
    /// Findings the stream deferred to the refresher (their accounts unknown and queued).
    pub findings_deferred: usize,
    /// BatchUpdateFindings calls Security Hub accepted from every path (stream and refresher)
    /// per finding complete at the end: what making a finding complete cost in the write quota.
    pub accepted_update_calls_per_complete_finding: f64,
    /// Complete findings per second over the stream's time, against the same ceiling: the
    /// figure that counts (throughput that leaves findings `Partial` serves no one yet).
    pub complete_ratio_to_ceiling: f64,
    /// Σ over accounts of ⌈n/100⌉ for the whole run: the fewest BatchUpdateFindings calls that
    /// write every finding, whatever the batches.
    pub workload_bound_calls: usize,
    /// What the quota allows for the whole run's findings: rate × findings ÷ `workload_bound_calls`.
    pub workload_bound_findings_per_second: f64,
    /// Complete findings per second over the stream's time.
    pub complete_findings_per_second: f64,
    /// `complete_findings_per_second` ÷ `workload_bound_findings_per_second`.
    pub complete_ratio_to_workload_bound: f64,
    /// The batch size, the payload limit, and how the batches came out: records per batch, and
    /// how many batches the payload limit cut before the batch size.
    pub batch_size: usize,
    pub payload_limit: usize,
    pub batch_records: Percentiles,
    pub batches_cut_at_payload: usize,
    /// Mean bytes a record takes in the invocation payload (data base64-encoded, envelope).
    pub mean_record_payload_bytes: f64,
    /// Cold mode: simulated seconds from the stream's start until every finding was complete
    /// (`None`: not within the time allowed, `cold_limit_seconds`).
    pub seconds_until_complete: Option<f64>,
    /// Cold mode: the fewest Organizations calls that know every account (one walk of the OU
    /// tree, then tags and contact per account), and the time they take at the budget.
    pub organizations_calls_needed: usize,
    pub organizations_bound_seconds: f64,
    pub cold_limit_seconds: f64,
    /// Organizations calls made in all (stream lookups, walks, completions).
    pub organizations_calls: usize,
    /// The refresher's runs and what they did together.
    pub refresher_runs: usize,
    pub sweep: SweepReport,
    /// Updates the handler reported (a finding written twice counts twice).
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
    /// Findings held in the pending-writes store by the stream (each once per hold).
    pub findings_pending: usize,
    /// Of those, written by the refresher's drain (the rest by the enrichers' own drains).
    pub pending_drained_by_refresher: usize,
    /// DynamoDB requests of the pending-writes store, per the adapter's calls.
    pub pending_store_requests: usize,
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
    stream: StreamRecord,
    /// Bytes it takes in a batch's payload.
    payload_len: usize,
    /// When the record entered the stream, wall time since start.
    enters: Duration,
}

/// Σ over accounts of ⌈n/100⌉: the fewest BatchUpdateFindings calls for these findings' accounts.
pub fn workload_bound_calls(accounts: impl IntoIterator<Item = usize>) -> usize {
    let mut per_account: HashMap<usize, usize> = HashMap::new();
    for account in accounts {
        *per_account.entry(account).or_default() += 1;
    }
    per_account.values().map(|n| n.div_ceil(securityhub_enricher::core::plan::MAX_FINDINGS_PER_UPDATE)).sum()
}

impl Simulation {
    pub async fn run(&self, progress: impl Fn(usize) + Send + Sync) -> Summary {
        let scale = self.time_scale.max(0.001);
        let org = synthetic_org(self.accounts, self.seed);
        let mut generator = Generator::new(self.accounts, self.seed);
        if self.minimal_findings {
            generator = generator.minimal();
        }
        let source = PipeSource::default();
        let mut shards: Vec<VecDeque<Record>> = (0..self.shards).map(|_| VecDeque::new()).collect();
        let mut expected = Vec::with_capacity(self.findings);
        let mut stored: Vec<Finding> = Vec::with_capacity(self.findings);
        let mut finding_accounts = Vec::with_capacity(self.findings);
        let mut payload_bytes = 0usize;
        for i in 0..self.findings {
            let (account, finding) = generator.finding();
            finding_accounts.push(account);
            stored.push(serde_json::from_value(finding.clone()).expect("the generator writes valid findings"));
            let id = FindingId {
                id: finding["Id"].as_str().unwrap_or_default().to_owned(),
                product_arn: finding["ProductArn"].as_str().unwrap_or_default().to_owned(),
            };
            let enters = match self.produce_rate {
                Some(rate) => Duration::from_secs_f64(i as f64 / rate / scale),
                None => Duration::ZERO,
            };
            expected.push((id, enters));
            let key = finding["AwsAccountId"].as_str().unwrap_or_default().to_owned();
            let data = serde_json::to_vec(&imported_event(&[finding], i)).unwrap_or_default();
            let stream = StreamRecord::new(
                &format!("shardId-{:012}", account % self.shards),
                &format!("{i:056}"),
                &key,
                &data,
                1_795_000_000.0 + enters.as_secs_f64() * scale,
            );
            let payload_len = stream.payload_len(&source);
            payload_bytes += payload_len;
            shards[account % self.shards].push_back(Record { stream, payload_len, enters });
        }
        let with_findings = finding_accounts.iter().collect::<std::collections::HashSet<_>>().len();
        let workload_bound_calls = workload_bound_calls(finding_accounts);

        let scaled = move |d: Duration| d.div_f64(scale);
        let hub = Arc::new(
            InMemoryHub::with_quota(Rate {
                per_second: self.hub_quota.per_second * scale,
                burst: self.hub_quota.burst,
            })
            .with_latency(scaled(self.hub_latency)),
        );
        // The findings exist in Security Hub as their events enter the stream: the refresher's
        // GetFindings pages find them there.
        hub.import(stored);
        let store: Arc<InMemoryStore> = Arc::default();
        let organizations = Arc::new(BudgetedOrganizations {
            walk_calls: walk_calls(&org),
            inner: StaticSource::new(org.clone()),
            budget: Limiter::new(Rate { per_second: self.organizations_budget * scale, burst: 5 }),
            latency: scaled(self.organizations_latency),
            calls: Default::default(),
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
        if self.mode == Mode::Steady {
            let mut rng = rand::rng();
            for record in org {
                if let AccountRecord::Found(meta) = &record {
                    let id = meta.account_id.clone();
                    store.insert(&id, CacheEntry::new(record, now_epoch_seconds(), &times, &mut rng));
                }
            }
        }
        let pool = Rate { per_second: self.hub_quota.per_second * scale, burst: self.hub_quota.burst };
        let static_share = share_of(pool, self.shards as u32);
        let ledger = Arc::new(InMemoryLedger::with_latency(scaled(self.ledger_latency)));

        // The cache table's refresh queue and run lease, shared by the stream (which queues the
        // accounts it could not resolve) and the refresher, as in a deployment.
        let sweep_state = Arc::new(InMemorySweepState::default());
        // The pending-writes store in the cache table (each request a ledger call's latency).
        let pending_store = Arc::new(InMemoryPendingWrites::with_latency(scaled(self.ledger_latency)));
        // One Lambda environment of either function: its own memory tier, the shared table,
        // Organizations and hub.
        let environment = || {
            let builder = EnricherBuilder::new();
            // "Saturated" counts requests, not time: the region's pool as deployed, unscaled.
            let builder = match self.pending_delay {
                Some(delay) => builder.pending(pending_store.clone(), scaled(delay), STREAM_BATCH_UPDATE_POOL),
                None => builder,
            };
            builder
                .refresh_queue(sweep_state.clone())
                .store(store.clone())
                .source(organizations.clone())
                .cache_times(times.clone())
                .lookups(8, scaled(Duration::from_secs(5)))
                .background_lookups(scaled(BACKGROUND_LOOKUP_BUDGET))
                .hub(hub.clone())
                .backoff(scaled(Duration::from_millis(100)), 8)
                .partial_writes(self.partial_writes)
        };
        let started = Instant::now();
        let samples: Arc<Mutex<BTreeMap<u64, SecondSample>>> = Arc::default();
        let totals: Arc<Mutex<Summary>> = Arc::default();
        let batch_records: Arc<Mutex<Vec<f64>>> = Arc::default();
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
            let mut enricher = environment().quota(quota).deadline_margin(Duration::ZERO).build();
            if let Some(coalescer) = enricher.pending.as_mut() {
                *coalescer = scaled_coalescer(coalescer, scale);
            }
            let (samples, totals, done, progress) = (samples.clone(), totals.clone(), done.clone(), progress.clone());
            let batch_records = batch_records.clone();
            let (batch_size, payload_limit, source) = (self.batch_size, self.payload_limit, source.clone());
            tasks.push(async move {
                while !queue.is_empty() {
                    let now = started.elapsed();
                    let waiting = queue.iter().take_while(|r| r.enters <= now);
                    let ready =
                        crate::batches::next_batch_len(waiting.map(|r| r.payload_len), batch_size, payload_limit);
                    if ready == 0 {
                        tokio::time::sleep(queue[0].enters - now).await;
                        continue;
                    }
                    let cut_at_payload = ready < batch_size && queue.get(ready).is_some_and(|next| next.enters <= now);
                    let batch: Vec<Record> = queue.drain(..ready).collect();
                    batch_records.lock().unwrap().push(batch.len() as f64);
                    let body = Value::Array(batch.iter().map(|r| r.stream.envelope(&source)).collect());
                    let incoming: IncomingBatch = serde_json::from_value(body).expect("well-formed batch");
                    let deadline = Instant::now() + scaled(Duration::from_secs(900));
                    let report = enricher.handle(incoming, deadline).await;
                    let finished = started.elapsed();
                    // As the Pipe does: from the first failed record on, delivered again, first.
                    let failed = failed_ids(&report.response.batch_item_failures);
                    let (_, again) = after_response(batch, &failed, |r| r.stream.event_id());
                    let redelivered = redeliver(&mut queue, again);
                    // Updates and lookups are sampled where they happen (below); failed records
                    // when their batch ends.
                    let second = (finished.as_secs_f64() * scale) as u64;
                    let mut samples = samples.lock().unwrap();
                    let sample = samples.entry(second).or_insert_with(|| SecondSample { second, ..Default::default() });
                    sample.records_failed += report.tally.records_failed;
                    let mut t = totals.lock().unwrap();
                    t.batches += 1;
                    t.batches_cut_at_payload += usize::from(cut_at_payload);
                    t.findings_enriched += report.tally.findings_enriched + report.pending.drained.written;
                    t.findings_enriched_partial += report.tally.findings_enriched_partial;
                    t.findings_deferred += report.tally.findings_deferred;
                    t.update_calls += report.writes.updates.calls;
                    t.accepted_update_calls += report.writes.updates.findings_per_call.len();
                    t.minimum_update_calls += report.writes.minimum_calls;
                    t.throttles += report.writes.updates.throttled;
                    t.records_failed += report.tally.records_failed;
                    t.findings_pending += report.tally.findings_pending;
                    let finished_records = report.tally.records_in - redelivered.min(report.tally.records_in);
                    let n = done.fetch_add(finished_records, std::sync::atomic::Ordering::Relaxed);
                    progress(n + finished_records);
                }
            });
        }
        // One task: the environments interleave at their awaits, which is all a simulation
        // bound by quotas and latency needs (and it keeps the handler's futures un-spawned).
        let stream_done = std::sync::atomic::AtomicBool::new(false);
        let stream = async {
            futures::future::join_all(tasks).await;
            let elapsed = started.elapsed();
            stream_done.store(true, std::sync::atomic::Ordering::Release);
            (elapsed, completeness(&hub, &expected))
        };
        // The fewest calls that know every account with findings: the walk and 2 per account, or,
        // where the tree has more pages than that saves (a small organization, many small OUs),
        // each of those accounts looked up alone.
        let organizations_calls_needed =
            (organizations.walk_calls + CALLS_PER_COMPLETION * with_findings).min(CALLS_PER_LOOKUP * with_findings);
        let organizations_bound_seconds = organizations_calls_needed as f64 / self.organizations_budget;
        let cold_limit = Duration::from_secs_f64((20.0 * organizations_bound_seconds).max(3600.0));
        let cold = async {
            if self.mode == Mode::Cold {
                let mut refresher = Refresher::new(
                    environment()
                        .quota(QuotaShare::shared(
                            pool,
                            static_share,
                            ledger.clone(),
                            format!("{BACKGROUND_PREFIX}refresher"),
                            scaled(securityhub_enricher::wiring::QUOTA_RENEWAL),
                        ))
                        .build_sweeper(
                            hub.clone(),
                            Rate {
                                per_second: SWEEP_GET_FINDINGS_RATE.per_second * scale,
                                burst: SWEEP_GET_FINDINGS_RATE.burst,
                            },
                        ),
                    sweep_state.clone(),
                    Some(organizations.clone()),
                )
                .with_pass_interval(scaled(self.sweep_interval))
                // The pauses between passes run on the simulator's clock like everything else.
                .with_pacing(Pacing {
                    min_time_for_a_pass: scaled(Pacing::default().min_time_for_a_pass),
                    pause: scaled(Pacing::default().pause),
                });
                // The sweep keeps its margin for writing in simulated time too.
                refresher.sweeper.write_margin = scaled(WRITE_MARGIN);
                let schedule = Schedule {
                    started,
                    interval: scaled(self.refresher_schedule),
                    run_time: scaled(LAMBDA_TIMEOUT),
                    limit: scaled(cold_limit),
                };
                schedule.run(&refresher, &stream_done, || completeness(&hub, &expected).partial_or_missing == 0).await
            } else {
                Cold::default()
            }
        };
        // The refresher's drain of the pending-writes store, on its schedule (a run a minute,
        // the first a minute in, each draining for 55 s while anything waits), until the stream
        // is done and nothing waits.
        let drain = async {
            if self.pending_delay.is_none() {
                return;
            }
            let mut drainer = environment()
                .quota(QuotaShare::shared(
                    pool,
                    static_share,
                    ledger.clone(),
                    format!("{BACKGROUND_PREFIX}refresher-drain"),
                    scaled(securityhub_enricher::wiring::QUOTA_RENEWAL),
                ))
                .build();
            let coalescer = drainer.pending.take().expect("the drainer has the store");
            let coalescer = scaled_coalescer(&coalescer, scale);
            let mut next = started + scaled(self.refresher_schedule);
            loop {
                tokio::time::sleep_until(next).await;
                let until = Instant::now() + scaled(securityhub_enricher::service::pending::DRAIN_PER_RUN);
                let (drained, writes) =
                    coalescer.drain_while_waiting(&drainer.directory, &drainer.pipeline, until).await;
                {
                    let mut t = totals.lock().unwrap();
                    t.update_calls += writes.updates.calls;
                    t.accepted_update_calls += writes.updates.findings_per_call.len();
                    t.minimum_update_calls += writes.minimum_calls;
                    t.throttles += writes.updates.throttled;
                    t.findings_enriched += drained.written;
                    t.pending_drained_by_refresher += drained.written;
                }
                if stream_done.load(std::sync::atomic::Ordering::Acquire) && pending_store.waiting() == 0 {
                    break;
                }
                next += scaled(self.refresher_schedule);
            }
        };
        let (((stream_elapsed, after_stream), cold), ()) = tokio::join!(async { tokio::join!(stream, cold) }, drain);
        // With findings waiting in the store, the run ends when the last of them is written.
        // (Cold runs keep the stream's own figures: the refresher's sweep completes them.)
        let (stream_elapsed, after_stream) = if self.pending_delay.is_some() && self.mode == Mode::Steady {
            let last_write = hub.first_updated.lock().unwrap().values().max().map(|at| *at - started);
            (stream_elapsed.max(last_write.unwrap_or_default()), completeness(&hub, &expected))
        } else {
            (stream_elapsed, after_stream)
        };
        let elapsed = stream_elapsed.as_secs_f64() * scale;

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
        summary.mode = format!("{:?}", self.mode).to_lowercase();
        summary.complete_after_stream = after_stream.complete;
        summary.partial_after_stream = after_stream.partial;
        summary.complete_ratio_to_ceiling =
            after_stream.complete as f64 / elapsed / summary.ceiling_findings_per_second;
        summary.workload_bound_calls = workload_bound_calls;
        summary.workload_bound_findings_per_second =
            self.hub_quota.per_second * self.findings as f64 / workload_bound_calls.max(1) as f64;
        summary.complete_findings_per_second = after_stream.complete as f64 / elapsed;
        summary.complete_ratio_to_workload_bound =
            summary.complete_findings_per_second / summary.workload_bound_findings_per_second;
        summary.batch_size = self.batch_size;
        summary.payload_limit = self.payload_limit;
        summary.batch_records = percentiles(std::mem::take(&mut *batch_records.lock().unwrap()));
        summary.mean_record_payload_bytes = payload_bytes as f64 / self.findings.max(1) as f64;
        if self.mode == Mode::Cold {
            summary.seconds_until_complete = cold.complete_at.map(|at| at.as_secs_f64() * scale);
            summary.organizations_calls_needed = organizations_calls_needed;
            summary.organizations_bound_seconds = organizations_bound_seconds;
            summary.cold_limit_seconds = cold_limit.as_secs_f64();
        }
        summary.organizations_calls = organizations.calls.load(std::sync::atomic::Ordering::Relaxed);
        summary.refresher_runs = cold.runs;
        summary.sweep = cold.sweep;
        summary.lost = lost;
        let complete_at_end = self.findings - lost.max(completeness(&hub, &expected).partial_or_missing);
        // From the hub's own log: a run cut short when the last finding became complete never
        // reported its writes.
        let accepted_everywhere = hub.call_log.lock().unwrap().iter().filter(|c| !c.throttled).count();
        summary.accepted_update_calls_per_complete_finding = accepted_everywhere as f64 / complete_at_end.max(1) as f64;
        let per_1000 = |n: f64| n * 1000.0 / self.findings as f64;
        summary.calls_per_1000_findings = BTreeMap::from([
            ("SecurityHub.BatchUpdateFindings".to_owned(), per_1000(summary.update_calls as f64)),
            ("Organizations and Account (every call)".to_owned(), per_1000(summary.organizations_calls as f64)),
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
        summary.pending_store_requests = pending_store.requests.load(std::sync::atomic::Ordering::Relaxed);
        summary
            .calls_per_1000_findings
            .insert("DynamoDB (pending-writes store)".to_owned(), per_1000(summary.pending_store_requests as f64));
        summary.latency_ms = percentiles(latencies);
        summary.series = samples.into_values().collect();
        summary
    }
}

/// The coalescer's own times (the claim, the drain's margin and poll, how saturation is seen)
/// in simulated time.
fn scaled_coalescer(coalescer: &Coalescer, scale: f64) -> Coalescer {
    let mut scaled = Coalescer::new(coalescer.store.clone(), coalescer.delay, coalescer.pool);
    scaled.clock = coalescer.clock;
    scaled.claim = coalescer.claim.div_f64(scale);
    scaled.margin = coalescer.margin.div_f64(scale);
    scaled.poll = coalescer.poll.div_f64(scale);
    scaled.saturation_wait = coalescer.saturation_wait.div_f64(scale);
    scaled.saturation_memory = coalescer.saturation_memory.div_f64(scale);
    scaled
}

/// How many of the generated findings Security Hub holds complete, and how many not yet.
#[derive(Debug, Clone, Copy, Default)]
struct Completeness {
    complete: usize,
    partial: usize,
    /// `Partial` or never written.
    partial_or_missing: usize,
}

fn completeness(hub: &InMemoryHub, expected: &[(FindingId, Duration)]) -> Completeness {
    let findings = hub.findings.lock().unwrap();
    let mut tally = Completeness::default();
    for (id, _) in expected {
        match findings.get(id).and_then(|p| p.fields.get(keys::FINDING_ENRICHED)).map(String::as_str) {
            Some(ENRICHED_COMPLETE) => tally.complete += 1,
            Some(_) => {
                tally.partial += 1;
                tally.partial_or_missing += 1;
            }
            None => tally.partial_or_missing += 1,
        }
    }
    tally
}

/// The refresher on its schedule: a run every `interval` (one at a time, as the lease keeps
/// them, each within Lambda's 15 minutes), the first one interval after the start, as
/// EventBridge schedules it.
struct Schedule {
    started: Instant,
    interval: Duration,
    /// Lambda's timeout, scaled.
    run_time: Duration,
    /// Time allowed for every finding to become complete, scaled.
    limit: Duration,
}

const LAMBDA_TIMEOUT: Duration = Duration::from_secs(900);

/// What the cold half of a run saw.
#[derive(Default)]
struct Cold {
    /// Wall time from the start until every finding was complete.
    complete_at: Option<Duration>,
    runs: usize,
    sweep: SweepReport,
}

/// How often the schedule looks at the hub between runs, in wall time.
const POLL: Duration = Duration::from_millis(100);

impl Schedule {
    async fn run(
        &self,
        refresher: &Refresher,
        stream_done: &std::sync::atomic::AtomicBool,
        all_complete: impl Fn() -> bool,
    ) -> Cold {
        let mut cold = Cold::default();
        let mut next_run = self.started + self.interval;
        loop {
            let done = stream_done.load(std::sync::atomic::Ordering::Acquire);
            if done && all_complete() {
                cold.complete_at = Some(self.started.elapsed());
                break;
            }
            if self.started.elapsed() >= self.limit {
                break;
            }
            if Instant::now() < next_run {
                tokio::time::sleep_until(next_run.min(Instant::now() + POLL)).await;
                continue;
            }
            cold.runs += 1;
            // Completion is watched during a run too: a run goes on warming the rest of the
            // organization after the last finding is complete, and that is not the findings' wait.
            let completed_during_run = async {
                loop {
                    tokio::time::sleep(POLL).await;
                    if stream_done.load(std::sync::atomic::Ordering::Acquire) && all_complete() {
                        return self.started.elapsed();
                    }
                }
            };
            tokio::select! {
                report = refresher.run(Instant::now() + self.run_time, &|_| {}) => cold.sweep += report.sweep,
                at = completed_during_run => {
                    cold.complete_at = Some(at);
                    break;
                }
            }
            next_run = (next_run + self.interval).max(Instant::now());
        }
        cold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(mode: Mode, quota_sharing: QuotaSharing) -> Simulation {
        Simulation {
            mode,
            findings: 600,
            accounts: 60,
            seed: 5,
            shards: 3,
            batch_size: 150,
            time_scale: 1.0,
            quota_sharing,
            ..Simulation::default()
        }
    }

    /// A small steady run, both ways of sharing the quota, on tokio's paused clock: nothing
    /// lost, every finding complete, the bound met, and the per-second series adds up to the
    /// totals. (Throughput is the harness's to measure.)
    #[tokio::test(start_paused = true)]
    async fn a_steady_simulation_leaves_every_finding_complete_and_its_series_adds_up() {
        for quota_sharing in [QuotaSharing::Ledger, QuotaSharing::Static] {
            let summary = small(Mode::Steady, quota_sharing).run(|_| {}).await;
            assert_eq!(summary.lost, 0, "{quota_sharing:?}");
            assert_eq!(summary.records_failed, 0);
            assert_eq!((summary.complete_after_stream, summary.partial_after_stream), (600, 0));
            assert!((summary.complete_ratio_to_ceiling - summary.ratio_to_ceiling).abs() < 1e-9);
            assert_eq!(summary.organizations_calls, 0, "the directory was cached");
            assert_eq!(summary.refresher_runs, 0);
            assert_eq!(summary.accepted_update_calls, summary.minimum_update_calls);
            assert_eq!(summary.series.iter().map(|s| s.update_calls).sum::<usize>(), summary.update_calls);
            assert_eq!(summary.series.iter().map(|s| s.throttles).sum::<usize>(), summary.throttles);
            assert!(summary.series.iter().enumerate().all(|(i, s)| s.second == i as u64), "no gaps");
            assert!(summary.latency_ms.p50 > 0.0 && summary.latency_ms.p50 <= summary.latency_ms.max);
        }
    }

    /// A cold run, both ways: the stream defers the findings of accounts it does not know (or
    /// writes them Partial, as it did before), the refresher on its schedule completes every
    /// one, that takes no less than the Organizations budget allows, and deferring spends fewer
    /// BatchUpdateFindings per complete finding.
    #[tokio::test(start_paused = true)]
    async fn a_cold_simulation_completes_every_finding_whether_the_stream_defers_or_writes_partial() {
        let mut calls_per_complete = Vec::new();
        for partial_writes in [false, true] {
            let simulation = Simulation { partial_writes, ..small(Mode::Cold, QuotaSharing::Ledger) };
            let summary = simulation.run(|_| {}).await;
            assert_eq!(summary.lost, 0);
            if partial_writes {
                assert!(summary.partial_after_stream > 0, "{summary:?}");
                assert_eq!(summary.findings_deferred, 0);
            } else {
                assert_eq!(summary.partial_after_stream, 0, "{summary:?}");
                assert!(summary.findings_deferred > 0, "{summary:?}");
            }
            assert!(summary.complete_after_stream < simulation.findings, "a cold stream cannot complete them all");
            let until = summary.seconds_until_complete.expect("every finding completed");
            assert!(until >= simulation.refresher_schedule.as_secs_f64(), "the refresher's first run is a minute in");
            // The budget's burst lets a few calls run ahead of the rate.
            assert!(
                until >= summary.organizations_bound_seconds - 5.0,
                "{until} vs {}: {summary:?}",
                summary.organizations_bound_seconds
            );
            assert!(summary.refresher_runs >= 1);
            assert!(summary.sweep.balances(), "{:?}", summary.sweep);
            assert!(summary.sweep.enriched_complete >= summary.partial_after_stream);
            assert!(
                summary.organizations_calls >= summary.organizations_calls_needed,
                "no fewer calls than the bound counts: {summary:?}"
            );
            calls_per_complete.push(summary.accepted_update_calls_per_complete_finding);
        }
        assert!(calls_per_complete[0] < calls_per_complete[1], "deferring writes less: {calls_per_complete:?}");
    }

    /// The default batch size is what 6 MB of invocation payload holds of the generator's
    /// findings: a default batch fits, twice the default never does.
    #[test]
    fn the_default_batch_size_is_what_six_megabytes_hold() {
        let source = PipeSource::default();
        let mut generator = Generator::new(5_000, 11);
        let sizes: Vec<usize> = (0..4 * DEFAULT_BATCH_SIZE)
            .map(|i| {
                let data = serde_json::to_vec(&imported_event(&[generator.finding().1], i)).unwrap();
                StreamRecord::new("shardId-000000000000", &format!("{i:056}"), "1", &data, 0.0).payload_len(&source)
            })
            .collect();
        for window in sizes.chunks(DEFAULT_BATCH_SIZE) {
            let n = crate::batches::next_batch_len(window.iter().copied(), usize::MAX, INVOCATION_PAYLOAD_LIMIT);
            assert_eq!(n, DEFAULT_BATCH_SIZE, "a default batch fits in 6 MB");
        }
        let n = crate::batches::next_batch_len(sizes.iter().copied(), 2 * DEFAULT_BATCH_SIZE, INVOCATION_PAYLOAD_LIMIT);
        assert!(n < 2 * DEFAULT_BATCH_SIZE / 10 * 6, "6 MB holds {n} records");
    }

    #[test]
    fn the_workload_bound_counts_each_accounts_findings_of_the_run_in_hundreds() {
        // Account 1: 250 findings (3 calls), account 2: 100 (1), account 3: 1 (1).
        let accounts = std::iter::repeat_n(1, 250).chain(std::iter::repeat_n(2, 100)).chain([3]);
        assert_eq!(workload_bound_calls(accounts), 5);
    }

    /// Honest batches on the paused clock: the findings carry their bodies, a batch is cut at
    /// 6 MB before its batch size, and the summary carries the workload bound beside today's.
    #[tokio::test(start_paused = true)]
    async fn batches_are_cut_at_six_megabytes_and_the_workload_bound_is_reported() {
        let simulation = Simulation { batch_size: 3_000, ..small(Mode::Steady, QuotaSharing::Ledger) };
        let summary = Simulation { findings: 3_000, shards: 1, ..simulation }.run(|_| {}).await;
        assert_eq!(summary.lost, 0);
        assert!(summary.batches_cut_at_payload >= 1, "{:?}", summary.batch_records);
        assert!(summary.batch_records.max < 1_200.0, "{:?}", summary.batch_records);
        assert!(summary.mean_record_payload_bytes > 4_000.0, "{}", summary.mean_record_payload_bytes);
        assert!(summary.workload_bound_calls <= summary.minimum_update_calls);
        let bound = 10.0 * 3_000.0 / summary.workload_bound_calls as f64;
        assert!((summary.workload_bound_findings_per_second - bound).abs() < 1e-9);
        assert!(summary.complete_ratio_to_workload_bound > 0.0 && summary.complete_ratio_to_workload_bound <= 1.05);
    }

    #[test]
    fn a_walk_pages_every_ou_and_twenty_accounts_a_page() {
        use securityhub_enricher::core::account::{AccountMetadata, ContactLookup, OrgUnit};
        let ou = |id: &str| OrgUnit { id: id.into(), name: id.into() };
        let account = |n: usize, path: Vec<OrgUnit>| {
            AccountRecord::Found(AccountMetadata {
                state: None,
                account_id: format!("{n:012}"),
                name: None,
                ou_path: path,
                tags: Default::default(),
                security_contact: ContactLookup::NotSet,
            })
        };
        // Root holds 1 account and OU a; a holds 41 accounts (3 pages) and no OU.
        let mut org = vec![account(0, vec![ou("r")])];
        org.extend((1..=41).map(|n| account(n, vec![ou("r"), ou("a")])));
        // ListRoots + root (1 + 1) + a (3 + 1).
        assert_eq!(walk_calls(&org), 1 + 2 + 4);
    }
}
