//! Coalescing across batches on a paused clock (issue 21): while the quota is saturated, an
//! account's few findings wait in the pending-writes store and go out in full requests, or once
//! the delay has passed; a record acknowledged never loses its findings, whatever environment
//! dies; and when the quota is free nothing waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loadtest::batches::incoming_batch_of_events;
use loadtest::fakes::directory::{InMemoryStore, StaticSource};
use loadtest::fakes::enricher::{EnricherBuilder, test_cache_times};
use loadtest::fakes::hub::InMemoryHub;
use loadtest::fakes::pending::InMemoryPendingWrites;
use loadtest::fakes::sweep_state::InMemorySweepState;
use loadtest::loadgen::imported_event;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, ContactLookup, OrgUnit};
use securityhub_enricher::core::cache_entry::CacheEntry;
use securityhub_enricher::core::enrich::keys::FINDING_ENRICHED;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::FindingId;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::ports::pending::PendingWrites;
use securityhub_enricher::service::batch_report::BatchReport;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::pending::Coalescer;
use securityhub_enricher::service::refresh::Refresher;
use serde_json::{Value, json};
use tokio::time::Instant;

const BIG: &str = "111122223333";
const SMALL: &str = "444455556666";
const OTHER: &str = "777788889999";
const PRODUCT: &str = "arn:aws:securityhub:us-east-1::product/aws/guardduty";
const DELAY: Duration = Duration::from_secs(60);
/// A pool this small is saturated by any batch of three accounts or more.
const TIGHT_POOL: Rate = Rate { per_second: 1.0, burst: 1 };

fn account(id: &str) -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: id.into(),
        name: Some(format!("account-{id}")),
        ou_path: vec![OrgUnit { id: "r-ab12".into(), name: "Root".into() }],
        tags: BTreeMap::new(),
        security_contact: ContactLookup::NotSet,
    })
}

fn finding_id(account: &str, n: usize) -> FindingId {
    FindingId {
        id: format!("arn:aws:guardduty:us-east-1:{account}:detector/d/finding/f{n}"),
        product_arn: PRODUCT.into(),
    }
}

fn finding(account: &str, n: usize) -> Value {
    json!({"Id": finding_id(account, n).id, "ProductArn": PRODUCT, "AwsAccountId": account,
           "UpdatedAt": "2026-11-22T07:00:00Z", "RecordState": "ACTIVE", "Title": "t"})
}

/// One record per finding: `(account, first, count)` runs of findings.
fn batch(runs: &[(&str, usize, usize)]) -> IncomingBatch {
    let events: Vec<Value> = runs
        .iter()
        .flat_map(|&(account, first, count)| (first..first + count).map(move |n| finding(account, n)))
        .enumerate()
        .map(|(n, f)| imported_event(&[f], n))
        .collect();
    incoming_batch_of_events(&events)
}

struct Deployment {
    hub: Arc<InMemoryHub>,
    store: Arc<InMemoryPendingWrites>,
    /// The cache table, holding every account: findings wait for the quota only once their
    /// account is known (an unknown account's are looked up or deferred to the refresher).
    cache: Arc<InMemoryStore>,
    pool: Rate,
}

impl Deployment {
    fn new(pool: Rate) -> Self {
        let cache: Arc<InMemoryStore> = Arc::default();
        for id in [BIG, SMALL, OTHER] {
            let entry = CacheEntry::new(account(id), now_epoch_seconds(), &test_cache_times(), &mut rand::rng());
            cache.insert(id, entry);
        }
        Deployment { hub: Arc::default(), store: Arc::default(), cache, pool }
    }

    /// A fresh Lambda environment: its own memory, the deployment's store, cache table and hub.
    fn environment(&self) -> Enricher {
        EnricherBuilder::new()
            .store(self.cache.clone())
            .source(Arc::new(StaticSource::new([account(BIG), account(SMALL), account(OTHER)])))
            .hub(self.hub.clone())
            .pending(self.store.clone(), DELAY, self.pool)
            .build()
    }

    fn written(&self, account: &str, count: usize) -> usize {
        let findings = self.hub.findings.lock().unwrap();
        (0..count)
            .filter(|&n| findings.get(&finding_id(account, n)).is_some_and(|p| p.fields.contains_key(FINDING_ENRICHED)))
            .count()
    }

    /// Findings carried by each accepted BatchUpdateFindings call, in order.
    fn calls(&self) -> Vec<usize> {
        self.hub.call_log.lock().unwrap().iter().filter(|c| c.applied > 0).map(|c| c.applied).collect()
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(300)
}

fn assert_acknowledged(report: &BatchReport) {
    assert!(report.tally.balances(), "{}", report.tally);
    assert!(report.response.batch_item_failures.is_empty(), "{:?}", report.response.batch_item_failures);
}

#[tokio::test(start_paused = true)]
async fn full_groups_are_written_once() {
    let deployment = Deployment::new(TIGHT_POOL);
    let enricher = deployment.environment();

    let first = enricher.handle(batch(&[(BIG, 0, 50), (SMALL, 0, 1), (OTHER, 0, 1)]), soon()).await;
    assert_acknowledged(&first);
    assert_eq!(first.tally.findings_pending, 52, "{}", first.tally);
    assert!(deployment.calls().is_empty(), "nothing written while the quota is saturated");

    let second = enricher.handle(batch(&[(BIG, 50, 50), (SMALL, 1, 1), (OTHER, 1, 1)]), soon()).await;
    assert_acknowledged(&second);
    assert_eq!(second.tally.findings_pending, 52);
    // The big account reached a full request: written at once, all 100 in one call.
    assert_eq!(deployment.calls(), [100]);
    assert_eq!(deployment.written(BIG, 100), 100);
    assert_eq!(second.pending.drained.written, 100);
    // The small ones wait for more, or the delay.
    assert_eq!(deployment.written(SMALL, 2), 0);
    assert_eq!(deployment.store.waiting(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_delay_bound_is_respected() {
    let deployment = Deployment::new(TIGHT_POOL);
    let enricher = deployment.environment();
    let held_at = Instant::now();
    enricher.handle(batch(&[(SMALL, 0, 1), (OTHER, 0, 1), (BIG, 0, 1)]), soon()).await;

    // Before the delay, a later saturated batch leaves them waiting.
    tokio::time::advance(DELAY - Duration::from_secs(5)).await;
    enricher.handle(batch(&[(BIG, 1, 1), (OTHER, 1, 1), (SMALL, 1, 1)]), soon()).await;
    assert!(deployment.calls().is_empty());

    // At the delay, the refresher's drain (running every minute, looking each second) writes
    // every account whose oldest finding waited that long, with what came since: one request
    // per account, while the stream still flows.
    tokio::time::advance(Duration::from_secs(5)).await;
    let coalescer = enricher.pending.as_ref().unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let (drained, _) = coalescer.drain_while_waiting(&enricher.directory, &enricher.pipeline, until).await;
    assert_eq!((drained.accounts, drained.written), (3, 6));
    assert_eq!(deployment.calls(), [2, 2, 2], "each account's two waiting findings in one request");
    let written_at = deployment.hub.first_updated.lock().unwrap().values().copied().max().unwrap();
    assert!(written_at - held_at <= DELAY + Duration::from_secs(1), "{:?}", written_at - held_at);
    assert_eq!(deployment.store.waiting(), 0);

    // With no batch coming after one, the refresher's drain writes them once nothing more is
    // held (the stream has caught up): a second later, not a delay later.
    enricher.handle(batch(&[(BIG, 2, 1), (OTHER, 2, 1), (SMALL, 2, 1)]), soon()).await;
    assert_eq!(deployment.store.waiting(), 3);
    let before = Instant::now();
    let (drained, _) = coalescer.drain_while_waiting(&enricher.directory, &enricher.pipeline, soon()).await;
    assert_eq!((drained.accounts, drained.written), (3, 3));
    assert!(Instant::now() - before <= Duration::from_secs(2), "{:?}", Instant::now() - before);
    assert_eq!(deployment.store.waiting(), 0);
    for account in [BIG, SMALL, OTHER] {
        assert_eq!(deployment.written(account, 3), 3, "{account}");
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_is_lost_when_an_environment_dies_between_acknowledging_and_writing() {
    let deployment = Deployment::new(TIGHT_POOL);
    let report = deployment.environment().handle(batch(&[(BIG, 0, 30), (SMALL, 0, 5), (OTHER, 0, 5)]), soon()).await;
    // Acknowledged to the stream: the Pipe will not deliver these records again.
    assert_acknowledged(&report);
    assert_eq!(report.tally.findings_pending, 40);
    // That environment is gone. Another one takes an account to write it and dies before
    // writing or releasing: its claim is left behind.
    let later = Deployment {
        hub: deployment.hub.clone(),
        store: deployment.store.clone(),
        cache: deployment.cache.clone(),
        pool: Rate { per_second: 9.0, burst: 27 },
    };
    let environment = later.environment();
    let coalescer = environment.pending.as_ref().unwrap();
    let now_ms = coalescer.clock.now_ms();
    let taken = deployment.store.take(BIG, now_ms, now_ms + coalescer.claim.as_millis() as i64).await.unwrap();
    assert_eq!(taken.map(|t| t.findings.len()), Some(30));
    assert_eq!(deployment.calls(), Vec::<usize>::new());

    // A later environment's small batch, the quota free: written at once, nothing waits (and
    // the index is not read: light load). The refresher's drain writes what waits, except the
    // account still claimed.
    let reads = deployment.store.requests.load(Ordering::Relaxed);
    let quiet = environment.handle(batch(&[(OTHER, 5, 1)]), soon()).await;
    assert_acknowledged(&quiet);
    assert_eq!((quiet.tally.findings_pending, quiet.tally.findings_enriched), (0, 1), "the quota is free");
    assert_eq!(deployment.store.requests.load(Ordering::Relaxed), reads, "no store request at light load");
    let coalescer = environment.pending.as_ref().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let (drained, _) = coalescer.drain_while_waiting(&environment.directory, &environment.pipeline, until).await;
    assert_eq!(drained.written, 10, "{drained:?}");
    assert_eq!((deployment.written(SMALL, 5), deployment.written(OTHER, 6)), (5, 6));
    assert_eq!(deployment.written(BIG, 30), 0);
    assert_eq!(deployment.store.waiting(), 30);

    // Once the dead drainer's claim lapses, the next drain (the refresher's) writes them.
    tokio::time::advance(coalescer.claim + Duration::from_secs(1)).await;
    let (drained, _) = coalescer.drain_while_waiting(&environment.directory, &environment.pipeline, soon()).await;
    assert_eq!(drained.written, 30, "{drained:?}");
    assert_eq!(deployment.written(BIG, 30), 30);
    assert_eq!(deployment.store.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_hold_means_writing_at_once() {
    let deployment = Deployment::new(TIGHT_POOL);
    deployment.store.unavailable.store(true, Ordering::Relaxed);
    let report = deployment.environment().handle(batch(&[(BIG, 0, 3), (SMALL, 0, 2), (OTHER, 0, 1)]), soon()).await;
    assert_acknowledged(&report);
    assert_eq!(report.tally.findings_pending, 0);
    assert_eq!(report.pending.hold_failures, 6);
    assert_eq!(report.tally.findings_enriched, 6);
}

#[tokio::test(start_paused = true)]
async fn each_refresher_run_drains_what_waits_beside_its_sweeps() {
    let deployment = Deployment::new(TIGHT_POOL);
    let report = deployment.environment().handle(batch(&[(BIG, 0, 7), (SMALL, 0, 2), (OTHER, 0, 1)]), soon()).await;
    assert_acknowledged(&report);
    assert_eq!(report.tally.findings_pending, 10);

    // The refresher as wiring builds it: its own sweeper (same directory and rendering), the
    // deployment's store, and the drain beside its run. The stream has gone quiet: the drain
    // writes everything once a second look finds nothing new held, each account in one request.
    let state = Arc::new(InMemorySweepState::default());
    let sweeper = EnricherBuilder::new()
        .store(deployment.cache.clone())
        .source(Arc::new(StaticSource::new([account(BIG), account(SMALL), account(OTHER)])))
        .hub(deployment.hub.clone())
        .build_sweeper(deployment.hub.clone(), Rate { per_second: 2.0, burst: 4 });
    let refresher = Refresher::new(sweeper, state, None).with_pending(Coalescer::new(
        deployment.store.clone(),
        DELAY,
        deployment.pool,
    ));
    let started = Instant::now();
    let run = refresher.run(soon(), &|_| {}).await;
    assert_eq!((run.pending.drained.accounts, run.pending.drained.written), (3, 10), "{:?}", run.pending.drained);
    assert_eq!(run.pending_writes.updates.findings_per_call.iter().sum::<usize>(), 10);
    let mut calls = deployment.calls();
    calls.sort_unstable();
    assert_eq!(calls, [1, 2, 7]);
    assert_eq!(deployment.store.waiting(), 0);
    assert!(Instant::now() - started <= Duration::from_secs(3), "{:?}", Instant::now() - started);

    // A run with nothing waiting leaves at once (its sweeps aside).
    let idle = refresher.run(soon(), &|_| {}).await;
    assert_eq!(idle.pending.drained.accounts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_fits_the_quota_is_held_when_the_writes_before_it_queued() {
    // A pool that one batch of three accounts fits (3 calls), but an environment's write
    // rate of 1 request/s: batches one after another queue for the quota, as in a burst.
    let deployment = Deployment::new(Rate { per_second: 100.0, burst: 100 });
    let enricher = EnricherBuilder::new()
        .store(deployment.cache.clone())
        .source(Arc::new(StaticSource::new([account(BIG), account(SMALL), account(OTHER)])))
        .hub(deployment.hub.clone())
        .rate(Rate { per_second: 1.0, burst: 1 })
        .pending(deployment.store.clone(), DELAY, deployment.pool)
        .build();

    // The first batch is written at once; its calls waited for the quota (2 s in all).
    let first = enricher.handle(batch(&[(BIG, 0, 1), (SMALL, 0, 1), (OTHER, 0, 1)]), soon()).await;
    assert_acknowledged(&first);
    assert_eq!((first.tally.findings_enriched, first.tally.findings_pending), (3, 0));
    assert!(first.writes.updates.quota_wait_ms >= 1_000, "{}", first.writes.updates.quota_wait_ms);

    // The next one fits the pool, but the quota was just saturated: its findings wait.
    let second = enricher.handle(batch(&[(BIG, 1, 1), (SMALL, 1, 1), (OTHER, 1, 1)]), soon()).await;
    assert_acknowledged(&second);
    assert_eq!(second.tally.findings_pending, 3, "{}", second.tally);
    assert_eq!(deployment.store.waiting(), 3);

    // Once no write has queued for SATURATION_MEMORY, the quota is free again: the next batch
    // is written at once, and what waits goes out with the refresher's drain.
    tokio::time::advance(securityhub_enricher::service::pending::SATURATION_MEMORY).await;
    let third = enricher.handle(batch(&[(BIG, 2, 1)]), soon()).await;
    assert_acknowledged(&third);
    assert_eq!((third.tally.findings_pending, third.tally.findings_enriched), (0, 1));
    let coalescer = enricher.pending.as_ref().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let (drained, _) = coalescer.drain_while_waiting(&enricher.directory, &enricher.pipeline, until).await;
    assert_eq!(drained.written, 3);
    assert_eq!(deployment.store.waiting(), 0);
    for account in [BIG, SMALL, OTHER] {
        assert_eq!(deployment.written(account, 2), 2, "{account}");
    }
    assert_eq!(deployment.written(BIG, 3), 3);
}

/// The new hub's findings wait and drain like CSPM's: held as snapshots (their OCSF identifier
/// and comment kept), then written by the refresher's drain as BatchUpdateFindingsV2 comments.
#[tokio::test(start_paused = true)]
async fn ocsf_findings_wait_and_are_written_as_v2_comments_by_the_drain() {
    use securityhub_enricher::core::finding::OcsfFindingId;
    let deployment = Deployment::new(TIGHT_POOL);
    let source = || Arc::new(StaticSource::new([account(BIG), account(SMALL), account(OTHER)]));
    let enricher = EnricherBuilder::new()
        .store(deployment.cache.clone())
        .source(source())
        .hub(deployment.hub.clone())
        .hub_v2(deployment.hub.clone())
        .pending(deployment.store.clone(), DELAY, deployment.pool)
        .build();
    let ocsf = |uid: &str, account: &str| {
        json!({"source": "aws.securityhub", "detail-type": "Findings Imported V2", "detail": {"findings": [{
            "metadata": {"uid": uid, "product": {"uid": "arn:aws:securityhub:us-east-1::productv2/aws/guardduty", "name": "GuardDuty"}},
            "cloud": {"account": {"uid": account}},
            "finding_info": {"uid": format!("gd-{uid}"), "title": "Recon", "modified_time": 1_000},
            "severity": "High", "severity_id": 4}]}})
    };
    let events = [ocsf("m1", BIG), ocsf("m2", SMALL), ocsf("m3", OTHER)];
    let report = enricher.handle(incoming_batch_of_events(&events), soon()).await;
    assert_acknowledged(&report);
    assert_eq!(report.tally.findings_pending, 3, "{}", report.tally);
    assert!(deployment.hub.comments.lock().unwrap().is_empty(), "nothing written while they wait");

    let sweeper = EnricherBuilder::new()
        .store(deployment.cache.clone())
        .source(source())
        .hub(deployment.hub.clone())
        .hub_v2(deployment.hub.clone())
        .build_sweeper(deployment.hub.clone(), Rate { per_second: 2.0, burst: 4 });
    let refresher = Refresher::new(sweeper, Arc::new(InMemorySweepState::default()), None)
        .with_pending(Coalescer::new(deployment.store.clone(), DELAY, deployment.pool));
    let (pending, writes) = refresher.drain_pending(soon()).await;
    assert_eq!(pending.drained.written, 3, "{:?}", pending.drained);
    assert_eq!(writes.updates_v2.findings_per_call.iter().sum::<usize>(), 3);
    let comments = deployment.hub.comments.lock().unwrap().clone();
    for (uid, account) in [("m1", BIG), ("m2", SMALL), ("m3", OTHER)] {
        let comment = &comments[&OcsfFindingId::MetadataUid(uid.into())];
        assert!(comment.contains(&format!("account-{account} ({account})")), "{uid}: {comment}");
    }
    assert_eq!(deployment.store.waiting(), 0);
}
