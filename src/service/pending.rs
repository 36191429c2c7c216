//! Coalescing writes across batches (issue 21): while BatchUpdateFindings' quota is saturated,
//! an account's few findings of a batch are held in the pending-writes store (durably, before
//! the batch is acknowledged) instead of costing a request each; they are written with later
//! findings of the same account in requests of up to 100, or once the oldest has waited the
//! delay (`PENDING_WRITE_DELAY_SECONDS`). When the quota is free nothing waits, and what waits
//! is written at once, largest account first.
//!
//! Draining serves the held findings through the one `Pipeline`, re-rendered with the
//! account's metadata of that moment: there is no second writer. A finding leaves the store
//! only once it ended in a final outcome (written, current, rejected...); one that failed stays
//! for the next drain, and one whose drainer died stays claimed until the claim lapses. The
//! enricher drains at the end of each invocation (full requests, and everything once the quota
//! is free); the refresher, every minute, drains while anything waits (polling the
//! index each second), so the bound holds when the stream goes quiet, and everything goes out
//! as soon as no more is held.

use std::collections::{BTreeMap, HashMap};
use std::ops::AddAssign;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::core::error::error_chain;
use crate::core::event::Candidate;
use crate::core::outcome::FindingOutcome;
use crate::core::pending::{
    FULL_GROUP, PendingAccount, PendingFinding, accounts_to_hold, accounts_to_write, quota_is_free, waiting_calls,
};
use crate::core::rate::Rate;
use crate::core::time::since_epoch;
use crate::ports::pending::{PendingWrites, StoreUsage};
use crate::service::directory::Directory;
use crate::service::pipeline::{Pipeline, WriteStats};
use crate::service::updater::UpdateStats;
use crate::telemetry::Metric;

/// Accounts taken and served together: one pipeline pass, so their events share PutEvents calls.
const ACCOUNTS_PER_DRAIN: usize = 20;
/// A drainer stops taking accounts this long before its deadline, to serve what it took.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);
/// How often the refresher's drain looks at the index while findings wait.
pub const POLL: Duration = Duration::from_secs(1);
/// A batch whose writes waited this long for permits, in all, saw the quota saturated: its
/// calls queued for it (at the pool's 9 requests/s, about nine calls beyond what it allowed).
pub const SATURATION_WAIT: Duration = Duration::from_secs(1);
/// How long a saturation seen in this environment's writes counts: a batch's few findings per
/// account are held when the batch alone fits the quota's burst but the batches before it
/// queued for the quota (in a burst, each batch fits; one after another, they do not).
pub const SATURATION_MEMORY: Duration = Duration::from_secs(10);
/// How long each refresher run drains: a little over the minute between runs, so that the
/// next run's drain has started before this one stops and the quota never idles between them
/// (two drains never write one account at once: each takes it under a claim).
pub const DRAIN_PER_RUN: Duration = Duration::from_secs(65);

/// What the store did for one batch or one drain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PendingStats {
    /// Findings of the batch held (outcome `pending`).
    pub held: usize,
    /// Findings the store could not take, written at once instead.
    pub hold_failures: usize,
    pub drained: DrainStats,
    /// The store's requests and capacity units for the hold and the drain (`None`: a store
    /// that does not measure them).
    pub store: Option<StoreUsage>,
}

/// Waiting findings served by a drain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainStats {
    pub accounts: usize,
    /// Ended in a final outcome (written, current, rejected) and left the store.
    pub written: usize,
    /// Failed for a retry: still in the store.
    pub failed: usize,
    /// Accounts another drainer held a claim on.
    pub claimed_elsewhere: usize,
    /// Store requests that failed (the findings stay; a later drain or the sweep comes back).
    pub store_errors: usize,
}

impl PendingStats {
    /// The store's metrics for a batch (what it held, and drained after it) or a refresher run
    /// (what its drain wrote), the same for both. (`FindingsPending` is the batch tally's.)
    pub fn record_metrics(&self) {
        Metric::PendingFindingsWritten.count(self.drained.written);
        Metric::PendingHoldFailures.count(self.hold_failures);
        if let Some(store) = self.store {
            Metric::PendingStoreWriteUnits.count(store.write_units as usize);
            Metric::PendingStoreReadUnits.count(store.read_units as usize);
        }
    }
}

impl AddAssign for DrainStats {
    fn add_assign(&mut self, later: DrainStats) {
        self.accounts += later.accounts;
        self.written += later.written;
        self.failed += later.failed;
        self.claimed_elsewhere += later.claimed_elsewhere;
        self.store_errors += later.store_errors;
    }
}

/// Wall-clock milliseconds that move with tokio's clock: the epoch at construction plus the
/// monotonic time since, so paused-clock tests control the delay, and a deployment's
/// environments, started at different times, agree to the clock's precision.
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    epoch_ms: i64,
    at: Instant,
}

impl Default for EpochClock {
    fn default() -> Self {
        EpochClock { epoch_ms: since_epoch().as_millis() as i64, at: Instant::now() }
    }
}

impl EpochClock {
    pub fn now_ms(&self) -> i64 {
        self.epoch_ms + self.at.elapsed().as_millis() as i64
    }
}

/// What a batch held and what it left to write at once.
pub struct Held {
    /// Members to serve now.
    pub now: Vec<usize>,
    /// Members held (outcome `pending`).
    pub held: Vec<usize>,
    pub stats: PendingStats,
    /// The accounts waiting after the hold, for the drain at the end of the batch.
    waiting: Vec<PendingAccount>,
    quota_free: bool,
}

impl Held {
    /// Every member written now, nothing held, no index read.
    fn at_once(members: &[usize], quota_free: bool) -> Self {
        Held {
            now: members.to_vec(),
            held: Vec::new(),
            stats: PendingStats::default(),
            waiting: Vec::new(),
            quota_free,
        }
    }
}

pub struct Coalescer {
    pub store: Arc<dyn PendingWrites>,
    /// How long a finding may wait for later ones of its account (`PENDING_WRITE_DELAY_SECONDS`).
    pub delay: Duration,
    /// BatchUpdateFindings' pool for the stream's environments: what "saturated" is measured by.
    pub pool: Rate,
    /// How long a drainer's claim on an account lasts, should it die before releasing it.
    pub claim: Duration,
    /// A drainer stops taking accounts this long before its deadline, to serve what it took.
    pub margin: Duration,
    /// How often the refresher's drain looks at the index while findings wait.
    pub poll: Duration,
    pub clock: EpochClock,
    /// Writes that waited this long for permits mark the quota saturated (`SATURATION_WAIT`).
    pub saturation_wait: Duration,
    /// For this long (`SATURATION_MEMORY`).
    pub saturation_memory: Duration,
    /// When this environment's writes last queued for the quota (`note_writes`).
    saturated_at: std::sync::Mutex<Option<Instant>>,
}

impl Coalescer {
    pub fn new(store: Arc<dyn PendingWrites>, delay: Duration, pool: Rate) -> Self {
        Coalescer {
            store,
            delay,
            pool,
            claim: Duration::from_secs(120),
            margin: DRAIN_MARGIN,
            poll: POLL,
            clock: EpochClock::default(),
            saturation_wait: SATURATION_WAIT,
            saturation_memory: SATURATION_MEMORY,
            saturated_at: Default::default(),
        }
    }

    /// Remembers whether a batch's writes queued for the quota (`SATURATION_WAIT`).
    pub fn note_writes(&self, updates: &UpdateStats) {
        if updates.quota_wait_ms >= self.saturation_wait.as_millis() as u64 {
            *self.saturated_at.lock().expect("saturation lock") = Some(Instant::now());
        }
    }

    /// This environment's writes queued for the quota within `saturation_memory`.
    fn recently_saturated(&self) -> bool {
        self.saturated_at.lock().expect("saturation lock").is_some_and(|at| at.elapsed() < self.saturation_memory)
    }

    /// What the store's requests have cost so far (`None`: not measured).
    pub fn usage(&self) -> Option<StoreUsage> {
        self.store.usage()
    }

    /// What the store's requests have cost since `before` (a `usage()` taken earlier).
    pub fn usage_since(&self, before: Option<StoreUsage>) -> Option<StoreUsage> {
        self.usage().zip(before).map(|(after, before)| after.since(before))
    }

    /// Holds the members (screened, deduplicated) of accounts with fewer than a full request in
    /// this batch, when the quota is saturated: by what waits and this batch, or because this
    /// environment's writes queued for it lately. An account the store cannot take is served
    /// now: holding is an optimisation, never a risk.
    pub async fn hold(&self, candidates: &[Candidate], members: &[usize]) -> Held {
        let mut per_account: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in members {
            per_account.entry(candidates[i].finding.aws_account_id.clone()).or_default().push(i);
        }
        let batch_calls: usize = per_account.values().map(|m| m.len().div_ceil(FULL_GROUP)).sum();
        let queued_lately = self.recently_saturated();
        // Light load: this environment's writes have not queued lately and the batch alone fits
        // the quota. Nothing of it waits, and the index is not read (16 read units a batch, the
        // store's main cost at light load); what others left waiting goes out with the
        // refresher's drain, or this environment's once it sees the quota busy.
        if !queued_lately && quota_is_free(0, batch_calls, self.pool) {
            return Held::at_once(members, true);
        }
        let waiting = match self.store.accounts().await {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "pending-writes index not read; writing this batch at once");
                return Held::at_once(members, false);
            }
        };
        let quota_free = !queued_lately && quota_is_free(waiting_calls(&waiting), batch_calls, self.pool);
        let mut held = Held { now: Vec::new(), held: Vec::new(), stats: PendingStats::default(), waiting, quota_free };
        if quota_free {
            held.now = members.to_vec();
            return held;
        }
        let sizes: BTreeMap<String, usize> = per_account.iter().map(|(a, m)| (a.clone(), m.len())).collect();
        let to_hold = accounts_to_hold(&sizes);
        let now_ms = self.clock.now_ms();
        let groups: Vec<(String, Vec<PendingFinding>)> = to_hold
            .iter()
            .map(|account| {
                let findings =
                    per_account[account].iter().map(|&i| PendingFinding::of(&candidates[i].finding, now_ms)).collect();
                (account.clone(), findings)
            })
            .collect();
        let answers: HashMap<String, _> = self.store.hold(&groups, now_ms).await.into_iter().collect();
        let mut after: BTreeMap<String, PendingAccount> =
            held.waiting.drain(..).map(|a| (a.account.clone(), a)).collect();
        for (account, members) in per_account {
            match answers.get(&account) {
                Some(Ok(waiting)) => {
                    held.stats.held += members.len();
                    held.held.extend(members);
                    let entry = after.entry(account).or_insert_with(|| waiting.clone());
                    entry.findings = waiting.findings;
                    entry.oldest_ms = entry.oldest_ms.min(waiting.oldest_ms);
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error_chain(error), account = %account, findings = members.len(), "findings not held; writing them at once");
                    held.stats.hold_failures += members.len();
                    held.now.extend(members);
                }
                None => held.now.extend(members),
            }
        }
        held.now.sort_unstable();
        held.waiting = after.into_values().collect();
        held
    }

    /// The drain at the end of a batch: accounts with a full request waiting, and, when the
    /// quota is free, every one. Accounts that waited the delay are the refresher's: an
    /// enricher busy writing them would stop reading its shard, and the findings still in the
    /// stream would then go out in requests of their own.
    pub async fn drain_after_batch(
        &self,
        held: &Held,
        directory: &Directory,
        pipeline: &Pipeline,
        deadline: Instant,
    ) -> (DrainStats, WriteStats) {
        let ready = if held.quota_free {
            accounts_to_write(&held.waiting, self.clock.now_ms(), self.delay_ms(), true)
        } else {
            accounts_to_write(&held.waiting, i64::MIN / 2, 0, false)
        };
        let (mut stats, mut writes) = self.drain(ready, directory, pipeline, deadline).await;
        // Once the quota is free, what waits goes out until none is left (or the time is).
        // (Nothing waited as the batch began: no index to read again.)
        while held.quota_free && !held.waiting.is_empty() && Instant::now() + self.margin < deadline {
            let ready = match self.store.accounts().await {
                Ok(waiting) => accounts_to_write(&waiting, self.clock.now_ms(), self.delay_ms(), true),
                Err(_) => break,
            };
            if ready.is_empty() {
                break;
            }
            let (more, more_writes) = self.drain(ready, directory, pipeline, deadline).await;
            let progress = more.written + more.failed;
            stats += more;
            writes += more_writes;
            if progress == 0 {
                break;
            }
        }
        (stats, writes)
    }

    /// The refresher's drain, every minute: until `deadline` or nothing waits, every full
    /// request and every account whose oldest finding has waited the delay, looking again each
    /// `POLL`; and, once nothing new was held since the last look (the stream has caught up,
    /// so waiting longer gains nothing), every account, largest first.
    pub async fn drain_while_waiting(
        &self,
        directory: &Directory,
        pipeline: &Pipeline,
        deadline: Instant,
    ) -> (DrainStats, WriteStats) {
        let mut stats = DrainStats::default();
        let mut writes = WriteStats::default();
        // Findings waiting at the last look, less those written since.
        let mut expected: Option<usize> = None;
        while Instant::now() + self.margin < deadline {
            let waiting = match self.store.accounts().await {
                Ok(waiting) => waiting,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "pending-writes index not read");
                    stats.store_errors += 1;
                    break;
                }
            };
            if waiting.is_empty() {
                break;
            }
            let total: usize = waiting.iter().map(|a| a.findings).sum();
            let settled = expected.is_some_and(|e| total <= e);
            let ready = accounts_to_write(&waiting, self.clock.now_ms(), self.delay_ms(), settled);
            if ready.is_empty() {
                expected = Some(total);
                tokio::time::sleep(self.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
                continue;
            }
            let (more, more_writes) = self.drain(ready, directory, pipeline, deadline).await;
            expected = Some(total.saturating_sub(more.written));
            let stuck = more.written == 0;
            stats += more;
            writes += more_writes;
            if stuck {
                // Claimed elsewhere or failing: look again after a pause, not at once.
                tokio::time::sleep(self.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
            }
        }
        (stats, writes)
    }

    fn delay_ms(&self) -> i64 {
        self.delay.as_millis() as i64
    }

    /// Takes these accounts' waiting findings, a few accounts at a time, serves them through
    /// the pipeline, and releases them: those that ended in a final outcome leave the store.
    pub async fn drain(
        &self,
        accounts: Vec<String>,
        directory: &Directory,
        pipeline: &Pipeline,
        deadline: Instant,
    ) -> (DrainStats, WriteStats) {
        let mut stats = DrainStats::default();
        let mut writes = WriteStats::default();
        for chunk in accounts.chunks(ACCOUNTS_PER_DRAIN) {
            if Instant::now() + self.margin >= deadline {
                break;
            }
            let now_ms = self.clock.now_ms();
            let until_ms = now_ms + self.claim.as_millis() as i64;
            let taken = futures::future::join_all(
                chunk
                    .iter()
                    .map(|account| async move { (account.clone(), self.store.take(account, now_ms, until_ms).await) }),
            )
            .await;
            let mut owners: Vec<(String, Vec<String>)> = Vec::new();
            let mut candidates: Vec<Candidate> = Vec::new();
            for (account, result) in taken {
                match result {
                    Ok(Some(taken)) => {
                        owners.push((account, taken.findings.iter().map(PendingFinding::key).collect()));
                        candidates.extend(taken.findings.iter().map(PendingFinding::candidate));
                    }
                    Ok(None) => stats.claimed_elsewhere += 1,
                    Err(error) => {
                        stats.store_errors += 1;
                        tracing::warn!(error = %error_chain(&error), account = %account, "waiting findings not taken");
                    }
                }
            }
            stats.accounts += owners.len();
            let outcomes = self.serve(&candidates, directory, pipeline, deadline, &mut writes).await;
            let mut offset = 0;
            for (account, keys) in owners {
                let mut written = Vec::with_capacity(keys.len());
                for (n, key) in keys.iter().enumerate() {
                    match &outcomes[offset + n] {
                        Some(FindingOutcome::Failed(_)) | Some(FindingOutcome::Pending) | None => stats.failed += 1,
                        Some(_) => written.push(key.clone()),
                    }
                }
                offset += keys.len();
                stats.written += written.len();
                if let Err(error) = self.store.release(&account, &written).await {
                    // The findings written stay in the store and are written again by a later
                    // drain (an unchanged payload), after the claim lapses.
                    stats.store_errors += 1;
                    tracing::warn!(error = %error_chain(&error), account = %account, "waiting findings not released");
                }
            }
        }
        (stats, writes)
    }

    /// Serves taken findings as the stream would: accounts from the directory, then the one
    /// pipeline; one outcome per candidate, in order.
    async fn serve(
        &self,
        candidates: &[Candidate],
        directory: &Directory,
        pipeline: &Pipeline,
        deadline: Instant,
        writes: &mut WriteStats,
    ) -> Vec<Option<FindingOutcome>> {
        let mut outcomes = vec![None; candidates.len()];
        if candidates.is_empty() {
            return outcomes;
        }
        let mut accounts: Vec<String> = candidates.iter().map(|c| c.finding.aws_account_id.clone()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let cache = directory.from_cache(&accounts).await;
        let mut resolutions = cache.resolved;
        let (looked_up, _) = directory.look_up(cache.pending, deadline).await;
        resolutions.extend(looked_up);
        let members: Vec<usize> = (0..candidates.len()).collect();
        let known = |account: &str| resolutions.get(account).and_then(|r| r.record());
        let served = pipeline.serve(candidates, &members, known, None, deadline).await;
        *writes += served.stats;
        for (i, outcome) in served.outcomes {
            outcomes[i] = Some(outcome);
        }
        outcomes
    }
}
