//! A model of the write path under a burst, to compare ways of coalescing BatchUpdateFindings
//! across Lambda batches before one is built (issue 21): today's per-batch writes, a
//! pending-writes store drained per account, and deferring small groups to the sweep by account
//! (GetFindings at 3 requests/s). It is a discrete-event model in explicit simulated seconds
//! (no clock at all, so it runs 200,000 findings in well under a second and the same way every
//! time) over the same inputs as the simulator: the generator's findings and accounts, the
//! shards they are keyed to, and batches cut by the Pipe's rules (`crate::batches`). The
//! enricher's own code is not in it (the simulator runs that); what it keeps of AWS is what
//! bounds throughput: BatchUpdateFindings' quota (10 requests/s, burst 30, shared by the
//! region's environments), up to 100 findings and one payload (one account) per request,
//! GetFindings' 3 requests/s and 100 findings a page, and the latency of each call.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::Serialize;

use crate::batches::{INVOCATION_PAYLOAD_LIMIT, next_batch_len};
use crate::loadgen::{Generator, imported_event};
use crate::simulate::{DEFAULT_BATCH_SIZE, Percentiles, percentiles, workload_bound_calls};

/// Findings per BatchUpdateFindings request, and per GetFindings page.
const GROUP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Design {
    /// Today: each batch writes its own account groups before it is acknowledged.
    PerBatch,
    /// Small groups wait in a durable pending-writes store (items in a DynamoDB table) and a
    /// drainer writes them per account, largest first, in requests of up to 100.
    PendingStore,
    /// Small groups are left for the sweep: the account is marked, and the sweep reads its
    /// unwritten findings back with GetFindings (3 requests/s) and writes them in full groups.
    DeferToSweep,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub design: Design,
    pub findings: usize,
    pub accounts: usize,
    pub seed: u64,
    pub shards: usize,
    pub batch_size: usize,
    pub payload_limit: usize,
    /// The Pipe's MaximumBatchingWindowInSeconds: a batch that is not full waits until its
    /// first record has waited this long (the template's default is 10 s).
    pub batching_window: f64,
    /// Findings entering the stream per second; `None`: all at the start (a burst).
    pub produce_rate: Option<f64>,
    /// BatchUpdateFindings requests per second and burst, for the region.
    pub write_rate: f64,
    pub write_burst: f64,
    /// GetFindings requests per second and burst.
    pub read_rate: f64,
    pub read_burst: f64,
    pub hub_latency: f64,
    /// One DynamoDB request (BatchWriteItem of up to 25 items, Query, BatchWriteItem deletes).
    pub table_latency: f64,
    /// Time to decode and group one record of a batch.
    pub per_record: f64,
    /// The longest a finding may wait for its account's group to fill (the setting).
    pub max_delay: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            design: Design::PendingStore,
            findings: 20_000,
            accounts: 5_000,
            seed: 11,
            shards: 4,
            batch_size: DEFAULT_BATCH_SIZE,
            payload_limit: INVOCATION_PAYLOAD_LIMIT,
            batching_window: 10.0,
            produce_rate: None,
            write_rate: 10.0,
            write_burst: 30.0,
            read_rate: 3.0,
            read_burst: 6.0,
            hub_latency: 0.060,
            table_latency: 0.010,
            per_record: 0.000_05,
            max_delay: 60.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelSummary {
    pub design: String,
    pub findings: usize,
    pub accounts: usize,
    pub batch_size: usize,
    pub batches: usize,
    /// Seconds from the start until the last finding was written.
    pub elapsed_seconds: f64,
    pub complete_findings_per_second: f64,
    pub workload_bound_calls: usize,
    pub workload_bound_findings_per_second: f64,
    pub ratio_to_workload_bound: f64,
    pub update_calls: usize,
    /// Findings written in requests made because a finding had waited `max_delay`.
    pub calls_at_delay_bound: usize,
    pub get_findings_calls: usize,
    /// DynamoDB requests of the pending store: BatchWriteItem puts, Query, BatchWriteItem deletes.
    pub pending_puts: usize,
    /// Items put (one per account group that waits) and the findings they hold.
    pub pending_items: usize,
    pub pending_findings: usize,
    pub pending_queries: usize,
    pub pending_deletes: usize,
    /// From a record's arrival in the stream to its finding's write, seconds.
    pub latency_seconds: Percentiles,
    /// The longest a finding waited in the pending store or for the sweep (for its group to
    /// fill, then for the quota).
    pub max_wait_seconds: f64,
    /// When the writer first found nothing more on its way (every shard caught up): from then
    /// on nothing is held back to fill a group, findings wait only for the quota.
    pub stream_caught_up_seconds: Option<f64>,
    pub lost: usize,
}

/// Generic cell rate algorithm: a token bucket that grants requests in the order they ask.
struct Bucket {
    interval: f64,
    tolerance: f64,
    theoretical: f64,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        let interval = 1.0 / rate;
        Bucket { interval, tolerance: (burst - 1.0).max(0.0) * interval, theoretical: 0.0 }
    }

    /// When a request made at `at` may be sent.
    fn grant(&mut self, at: f64) -> f64 {
        let granted = at.max(self.theoretical - self.tolerance);
        self.theoretical = self.theoretical.max(granted) + self.interval;
        granted
    }

    /// When the next request could be sent, without taking it.
    fn next_free(&self, at: f64) -> f64 {
        at.max(self.theoretical - self.tolerance)
    }

    /// Requests that could be sent at `at` without waiting (the burst not yet spent).
    fn available(&self, at: f64) -> f64 {
        ((at - (self.theoretical - self.tolerance)) / self.interval).clamp(0.0, self.tolerance / self.interval + 1.0)
    }
}

/// A finding in flight: its index (for latency) and its account.
#[derive(Clone, Copy)]
struct Item {
    finding: usize,
    account: usize,
    arrived: f64,
}

/// What waits for an account: findings in order of arrival.
#[derive(Default)]
struct Waiting {
    items: VecDeque<Item>,
}

/// Events, earliest first.
#[derive(PartialEq)]
struct Event {
    at: f64,
    what: What,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum What {
    /// A shard's environment is free to take its next batch.
    Shard(usize),
    /// The writer (drainer or sweep) may send its next request.
    Writer,
}

impl Eq for Event {}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.total_cmp(&self.at)
    }
}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct Record {
    payload_len: usize,
    enters: f64,
    item: Item,
}

impl Model {
    pub fn run(&self) -> ModelSummary {
        use crate::batches::{PipeSource, StreamRecord};
        let source = PipeSource::default();
        let mut generator = Generator::new(self.accounts, self.seed);
        let mut queues: Vec<VecDeque<Record>> = (0..self.shards).map(|_| VecDeque::new()).collect();
        let mut accounts = Vec::with_capacity(self.findings);
        for i in 0..self.findings {
            let (account, finding) = generator.finding();
            accounts.push(account);
            let data = serde_json::to_vec(&imported_event(&[finding], i)).unwrap_or_default();
            let payload_len =
                StreamRecord::new("shardId-000000000000", &format!("{i:056}"), "000000000000", &data, 0.0)
                    .payload_len(&source);
            let enters = self.produce_rate.map_or(0.0, |rate| i as f64 / rate);
            queues[account % self.shards].push_back(Record {
                payload_len,
                enters,
                item: Item { finding: i, account, arrived: enters },
            });
        }
        let bound_calls = workload_bound_calls(accounts.iter().copied());

        let mut written: Vec<Option<f64>> = vec![None; self.findings];
        let mut writes = Bucket::new(self.write_rate, self.write_burst);
        let mut reads = Bucket::new(self.read_rate, self.read_burst);
        let mut summary = ModelSummary::default();
        let mut waiting: BTreeMap<usize, Waiting> = BTreeMap::new();
        let mut events: BinaryHeap<Event> = (0..self.shards).map(|s| Event { at: 0.0, what: What::Shard(s) }).collect();
        let mut writer_scheduled = false;
        // Shards whose queue holds nothing that has arrived: nothing more is coming soon.
        let mut caught_up = vec![false; self.shards];
        let mut max_wait: f64 = 0.0;

        // One request of up to 100 findings of one account, sent as soon as the quota lets.
        let mut write = |items: &[Item], at: f64, writes: &mut Bucket, summary: &mut ModelSummary| -> f64 {
            let sent = writes.grant(at);
            let done = sent + self.hub_latency;
            for item in items {
                written[item.finding] = Some(done);
            }
            summary.update_calls += 1;
            done
        };

        while let Some(Event { at: now, what }) = events.pop() {
            match what {
                What::Shard(shard) => {
                    let queue = &mut queues[shard];
                    let ready = next_batch_len(
                        queue.iter().take_while(|r| r.enters <= now).map(|r| r.payload_len),
                        self.batch_size,
                        self.payload_limit,
                    );
                    if ready == 0 {
                        caught_up[shard] = true;
                        if let Some(next) = queue.front() {
                            events.push(Event { at: next.enters, what: What::Shard(shard) });
                        }
                        continue;
                    }
                    // A batch that is not full waits for the batching window, or until it fills.
                    let full = ready == self.batch_size || queue.get(ready).is_some_and(|r| r.enters <= now);
                    let window_ends = queue[0].enters + self.batching_window;
                    if !full && now < window_ends {
                        let fills = queue.get(self.batch_size - 1).map_or(f64::INFINITY, |r| r.enters);
                        caught_up[shard] = true;
                        events.push(Event { at: window_ends.min(fills).max(now), what: What::Shard(shard) });
                        continue;
                    }
                    caught_up[shard] = false;
                    summary.batches += 1;
                    let batch: Vec<Item> = queue.drain(..ready).map(|r| r.item).collect();
                    let decoded = now + self.per_record * batch.len() as f64;
                    let mut groups: HashMap<usize, Vec<Item>> = HashMap::new();
                    for item in batch {
                        groups.entry(item.account).or_default().push(item);
                    }
                    let mut groups: Vec<Vec<Item>> = groups.into_values().collect();
                    groups.sort_by_key(|g| g[0].finding);
                    // The quota is free when what waits and this batch fit in what it grants
                    // within a second: the unspent burst and a second of its rate.
                    let batch_calls: usize = groups.iter().map(|g| g.len().div_ceil(GROUP)).sum();
                    let backlog: usize = waiting.values().map(|w| w.items.len().div_ceil(GROUP)).sum();
                    let quota_free = (backlog + batch_calls) as f64 <= writes.available(decoded) + self.write_rate;
                    let mut acknowledged = decoded;
                    let mut to_wait = 0usize;
                    for group in groups {
                        // Written now: the whole group, or (the quota busy) its full requests.
                        let full = if self.design == Design::PerBatch || quota_free {
                            group.len()
                        } else {
                            group.len() / GROUP * GROUP
                        };
                        for chunk in group[..full].chunks(GROUP) {
                            acknowledged = acknowledged.max(write(chunk, decoded, &mut writes, &mut summary));
                        }
                        if full < group.len() {
                            to_wait += 1;
                            summary.pending_findings += group.len() - full;
                            waiting.entry(group[0].account).or_default().items.extend(&group[full..]);
                        }
                    }
                    if to_wait > 0 {
                        // Durable before the batch is acknowledged: one item per group (the
                        // pending writes, or the account marked for the sweep), BatchWriteItem
                        // 25 at a time, 8 requests in flight.
                        let requests = to_wait.div_ceil(25);
                        summary.pending_puts += requests;
                        summary.pending_items += to_wait;
                        acknowledged = acknowledged.max(decoded + requests.div_ceil(8) as f64 * self.table_latency);
                        if !writer_scheduled {
                            writer_scheduled = true;
                            events.push(Event { at: acknowledged, what: What::Writer });
                        }
                    }
                    events.push(Event { at: acknowledged, what: What::Shard(shard) });
                }
                What::Writer => {
                    writer_scheduled = false;
                    if waiting.is_empty() {
                        continue;
                    }
                    // Largest group first; a group under 100 goes only when nothing more is on
                    // its way (every shard caught up), or it has waited the longest allowed, or
                    // what waits fits in a second of the quota.
                    let oldest = waiting
                        .iter()
                        .map(|(account, w)| (w.items[0].arrived, *account))
                        .min_by(|a, b| a.0.total_cmp(&b.0));
                    let largest = waiting.iter().max_by_key(|(_, w)| w.items.len()).map(|(a, w)| (*a, w.items.len()));
                    let backlog: usize = waiting.values().map(|w| w.items.len().div_ceil(GROUP)).sum();
                    let all_caught_up = caught_up.iter().all(|c| *c);
                    if all_caught_up && summary.stream_caught_up_seconds.is_none() {
                        summary.stream_caught_up_seconds = Some(now);
                    }
                    let settled = all_caught_up || backlog as f64 <= self.write_rate;
                    let pick = match (largest, oldest) {
                        (Some((account, n)), _) if n >= GROUP || settled => Some((account, false)),
                        (_, Some((arrived, account))) if now - arrived >= self.max_delay => Some((account, true)),
                        _ => None,
                    };
                    let Some((account, at_delay)) = pick else {
                        // Nothing may go yet: look again when the oldest reaches the delay or
                        // a batch arrives (batches schedule the writer themselves).
                        let wake = oldest.map_or(now + 1.0, |(arrived, _)| arrived + self.max_delay).min(now + 1.0);
                        writer_scheduled = true;
                        events.push(Event { at: wake, what: What::Writer });
                        continue;
                    };
                    let w = waiting.get_mut(&account).expect("picked from the map");
                    let n = w.items.len().min(GROUP);
                    let items: Vec<Item> = w.items.drain(..n).collect();
                    if w.items.is_empty() {
                        waiting.remove(&account);
                    }
                    for item in &items {
                        max_wait = max_wait.max(now - item.arrived);
                    }
                    let mut start = now;
                    match self.design {
                        Design::PendingStore => {
                            // Read the account's pending items (one Query), write, then delete.
                            summary.pending_queries += 1;
                            start += self.table_latency;
                        }
                        Design::DeferToSweep => {
                            // The findings are read back from Security Hub, 100 a page.
                            summary.get_findings_calls += 1;
                            start = reads.grant(start) + self.hub_latency;
                        }
                        Design::PerBatch => unreachable!("nothing waits"),
                    }
                    write(&items, start, &mut writes, &mut summary);
                    summary.calls_at_delay_bound += usize::from(at_delay);
                    if self.design == Design::PendingStore {
                        summary.pending_deletes += 1;
                    }
                    // The next request when the quota (and for the sweep, GetFindings) allows.
                    let next = match self.design {
                        Design::DeferToSweep => reads.next_free(now).max(writes.next_free(now) - self.hub_latency),
                        _ => writes.next_free(now),
                    };
                    writer_scheduled = true;
                    events.push(Event { at: next.max(now), what: What::Writer });
                }
            }
        }

        let latencies: Vec<f64> = written
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.map(|at| at - self.produce_rate.map_or(0.0, |rate| i as f64 / rate)))
            .collect();
        summary.lost = written.iter().filter(|w| w.is_none()).count();
        summary.elapsed_seconds = written.iter().flatten().copied().fold(0.0, f64::max);
        summary.design = format!("{:?}", self.design);
        summary.findings = self.findings;
        summary.accounts = self.accounts;
        summary.batch_size = self.batch_size;
        summary.complete_findings_per_second =
            (self.findings - summary.lost) as f64 / summary.elapsed_seconds.max(f64::EPSILON);
        summary.workload_bound_calls = bound_calls;
        summary.workload_bound_findings_per_second = self.write_rate * self.findings as f64 / bound_calls.max(1) as f64;
        summary.ratio_to_workload_bound =
            summary.complete_findings_per_second / summary.workload_bound_findings_per_second;
        summary.latency_seconds = percentiles(latencies);
        summary.max_wait_seconds = max_wait;
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(design: Design, findings: usize) -> Model {
        Model { design, findings, accounts: 500, seed: 3, ..Model::default() }
    }

    #[test]
    fn per_batch_writes_each_batch_alone_and_loses_nothing() {
        let m = Model { batch_size: 200, ..model(Design::PerBatch, 4_000) };
        let s = m.run();
        assert_eq!(s.lost, 0);
        assert!(s.update_calls > s.workload_bound_calls, "{s:?}");
        assert_eq!(s.get_findings_calls + s.pending_puts, 0);
    }

    #[test]
    fn the_pending_store_writes_within_the_bound_plus_one_per_delay_window_and_account() {
        let s = model(Design::PendingStore, 20_000).run();
        assert_eq!(s.lost, 0);
        // The limit: the bound plus one request per delay window and account. Here the
        // only requests beyond the bound are the few groups written while the quota was free.
        let windows = (s.elapsed_seconds / Model::default().max_delay).ceil() as usize;
        assert!(s.update_calls <= s.workload_bound_calls + windows * s.accounts, "{s:?}");
        assert!(s.update_calls as f64 <= 1.02 * s.workload_bound_calls as f64, "{s:?}");
        assert!(s.ratio_to_workload_bound >= 0.8, "{s:?}");
        // Nothing is held back to fill a group once the stream is read, and that is within
        // the delay bound here; from then on findings wait only for the quota.
        let caught_up = s.stream_caught_up_seconds.expect("the stream was read");
        assert!(caught_up <= Model::default().max_delay, "{s:?}");
    }

    #[test]
    fn deferring_to_the_sweep_is_bound_by_get_findings() {
        let s = model(Design::DeferToSweep, 20_000).run();
        assert_eq!(s.lost, 0);
        let reads_alone = s.get_findings_calls as f64 / 3.0;
        assert!(s.elapsed_seconds >= reads_alone - 2.0, "{s:?}");
    }

    #[test]
    fn under_light_load_nothing_waits_and_the_batching_window_sets_the_latency() {
        for design in [Design::PendingStore, Design::DeferToSweep] {
            let s = Model { produce_rate: Some(10.0), batching_window: 1.0, ..model(design, 600) }.run();
            assert_eq!(s.lost, 0);
            assert_eq!(s.pending_puts, 0, "{design:?}: {s:?}");
            assert!(s.latency_seconds.p50 < 2.0, "{s:?}");
            assert!(s.latency_seconds.max <= 1.0 + 0.2, "{s:?}");
        }
        let s = Model { produce_rate: Some(10.0), batching_window: 10.0, ..model(Design::PendingStore, 600) }.run();
        assert!(s.latency_seconds.p50 > 2.0, "a 10 s window holds records about 5 s: {s:?}");
    }
}
