//! The sweep and the refresher on in-memory fakes with tokio's paused clock: findings that
//! existed before the stream are enriched, Partial ones completed, current ones left alone,
//! groups fill across pages, a run that runs out of time resumes from its checkpoint, a changed
//! account's findings are rewritten and no other's, and our own keys change while foreign ones
//! stay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, active_finding as finding};
use loadtest::fakes::sweep_state::InMemorySweepState;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, ContactLookup, OrgUnit};
use securityhub_enricher::core::enrich::{TOMBSTONE, keys};
use securityhub_enricher::core::finding::{Finding, FindingId};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::refresh::{Refresher, WALK_REUSE};
use securityhub_enricher::service::sweep::{SweepReport, Sweeper};
use tokio::time::Instant;

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const READS: Rate = Rate { per_second: 2.0, burst: 4 };

fn account(id: &str, tags: &[(&str, &str)]) -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: id.into(),
        name: Some(format!("name-{id}")),
        ou_path: vec![OrgUnit { id: "r-1".into(), name: "Root".into() }],
        tags: tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        security_contact: ContactLookup::NotSet,
    })
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn sweeper(hub: &Arc<InMemoryHub>, source: Arc<StaticSource>) -> Sweeper {
    EnricherBuilder::new().source(source).hub(hub.clone()).build_sweeper(hub.clone(), READS)
}

fn no_progress(_: &SweepReport) {}

#[tokio::test(start_paused = true)]
async fn findings_from_before_the_stream_are_enriched_with_groups_that_fill_across_pages() {
    // Pages of 100 in account order: [A×80, B×20] [B×20, C×80]. Page by page, B would cost two
    // calls; across pages it costs one.
    let hub = Arc::new(InMemoryHub::default());
    hub.import(
        (0..80).map(|n| finding(A, n)).chain((0..40).map(|n| finding(B, n))).chain((0..80).map(|n| finding(C, n))),
    );
    let source = Arc::new(StaticSource::new([account(A, &[]), account(B, &[("team", "blue")]), account(C, &[])]));
    let report = sweeper(&hub, source).run(&[], None, far(), &no_progress).await;
    assert!(report.balances(), "{report:?}");
    assert!(report.complete());
    assert_eq!((report.examined, report.enriched_complete, report.still_partial), (200, 200, 0));
    assert_eq!(report.get_findings_calls, 3, "two pages of CSPM findings, then the new hub's one (empty) page");
    assert_eq!(report.writes.minimum_calls, 3);
    assert_eq!(report.writes.updates.findings_per_call.len(), 3, "one call per account, B's 40 across two pages");
    let b = hub.stored(&finding(B, 0).identifier()).unwrap();
    assert_eq!(b.user_defined_fields["team"], "blue");
    assert_eq!(b.user_defined_fields[keys::FINDING_ENRICHED], "True");

    // A second sweep finds everything current and writes nothing.
    let calls = hub.call_count();
    let again =
        sweeper(&hub, Arc::new(StaticSource::new([account(A, &[]), account(B, &[("team", "blue")]), account(C, &[])])))
            .run(&[], None, far(), &no_progress)
            .await;
    assert_eq!((again.examined, again.current), (200, 200));
    assert_eq!(hub.call_count(), calls, "no update for findings already current");
}

#[tokio::test(start_paused = true)]
async fn partial_findings_are_completed_once_organizations_answers() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..30).map(|n| finding(A, n)));
    let source = Arc::new(StaticSource::new([account(A, &[])]));
    source.fail(&[A]);
    let first = sweeper(&hub, source.clone()).run(&[], None, far(), &no_progress).await;
    assert_eq!(first.still_partial, 30, "{first:?}");
    assert_eq!(hub.stored(&finding(A, 0).identifier()).unwrap().user_defined_fields[keys::FINDING_ENRICHED], "Partial");

    source.fail(&[]);
    let second = sweeper(&hub, source).run(&[], None, far(), &no_progress).await;
    assert_eq!((second.enriched_complete, second.still_partial), (30, 0), "{second:?}");
    assert_eq!(hub.stored(&finding(A, 29).identifier()).unwrap().user_defined_fields[keys::FINDING_ENRICHED], "True");
}

#[tokio::test(start_paused = true)]
async fn a_run_out_of_time_resumes_from_its_checkpoint_and_every_finding_ends_enriched() {
    let hub = Arc::new(InMemoryHub::default());
    let all: Vec<Finding> = (0..1000).map(|n| finding(if n < 500 { A } else { B }, n)).collect();
    hub.import(all.clone());
    let source = Arc::new(StaticSource::new([account(A, &[]), account(B, &[])]));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state.clone(), Some(source.clone()));
    // 2 reads/s with a burst of 4, and 20 s kept for writing: a 22 s run reads 7 of the 10
    // pages and stops; the next run resumes where the account it was in began.
    let first = refresher.run(Instant::now() + Duration::from_secs(22), &no_progress).await;
    assert!(!first.pass_complete);
    assert!(first.sweep.examined < 1000, "{:?}", first.sweep);
    assert_eq!(first.warm.as_ref().map(|w| w.cached), Some(2), "the run warmed from a walk");
    let checkpoint = state.checkpoint().await.unwrap().expect("a checkpoint");
    let mut runs = 1;
    while state.checkpoint().await.unwrap().is_some() || runs == 1 {
        let report = refresher.run(Instant::now() + Duration::from_secs(22), &no_progress).await;
        runs += 1;
        assert!(report.sweep.balances());
        assert_eq!(report.warm.as_ref().map(|w| (w.already_cached, w.cached)), Some((2, 0)), "nothing to complete");
        assert_eq!(source.walks.load(std::sync::atomic::Ordering::Relaxed), 1, "the walk is reused, not repeated");
        if report.pass_complete {
            break;
        }
        assert!(runs < 10, "the pass never ends");
    }
    assert!(runs >= 2, "resumed from {checkpoint:?}");
    for f in &all {
        let stored = hub.stored(&f.identifier()).unwrap();
        assert_eq!(stored.user_defined_fields[keys::FINDING_ENRICHED], "True", "{}", f.id);
    }
    assert!(state.checkpoint().await.unwrap().is_none(), "a finished pass starts over next time");
}

#[tokio::test(start_paused = true)]
async fn a_changed_account_gets_its_findings_rewritten_and_no_other() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..20).map(|n| finding(A, n)).chain((0..20).map(|n| finding(B, n))));
    let source = Arc::new(StaticSource::new([
        account(A, &[("team", "payments"), ("env", "prod")]),
        account(B, &[("team", "data")]),
    ]));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state.clone(), None);
    assert!(refresher.run(far(), &no_progress).await.pass_complete);
    // Someone else's key on one of A's findings, written after we enriched it.
    let ticketed = finding(A, 3).identifier();
    let mut with_ticket = hub.stored(&ticketed).unwrap();
    with_ticket.user_defined_fields.insert("ticket".into(), "SEC-42".into());
    hub.import([with_ticket]);

    // A is re-tagged: `env` removed, `team` changed. account-events forgets it and queues it.
    source.update(account(A, &[("team", "platform")]));
    refresher.sweeper.directory.invalidate(&[A.to_owned()]).await.unwrap();
    state.enqueue(&[A.to_owned()]).await.unwrap();
    let calls = hub.call_count();
    let run = refresher.run(far(), &no_progress).await;
    assert_eq!(run.accounts, vec![A.to_owned()]);
    assert_eq!((run.sweep.examined, run.sweep.enriched_complete), (20, 20), "only A's findings: {:?}", run.sweep);
    assert_eq!(hub.call_count() - calls, 2, "one payload with the ticket, one without");
    assert!(state.queued().await.unwrap().is_empty());

    let a: BTreeMap<String, String> = hub.stored(&ticketed).unwrap().user_defined_fields;
    assert_eq!(a["team"], "platform");
    assert_eq!(a["env"], TOMBSTONE, "the removed tag's old value is gone");
    assert_eq!(a["ticket"], "SEC-42", "someone else's key is carried along");
    let b = hub.stored(&finding(B, 0).identifier()).unwrap().user_defined_fields;
    assert_eq!(b["team"], "data");
    let untouched: FindingId = finding(B, 1).identifier();
    assert!(hub.stored(&untouched).unwrap().user_defined_fields.contains_key(keys::ENRICHED_FROM));
}

#[tokio::test(start_paused = true)]
async fn a_refused_checkpoint_token_starts_the_pass_over() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..10).map(|n| finding(A, n)));
    let state = Arc::new(InMemorySweepState::default());
    let stale =
        securityhub_enricher::ports::sweep_state::Checkpoint { next_token: "expired".into(), pass_started_at: 0 };
    state.save_checkpoint(Some(&stale)).await.unwrap();
    let refresher = Refresher::new(sweeper(&hub, Arc::new(StaticSource::new([account(A, &[])]))), state.clone(), None);
    let first = refresher.run(far(), &no_progress).await;
    assert_eq!(first.sweep.examined, 0);
    assert!(state.checkpoint().await.unwrap().is_none(), "the refused token is dropped");
    let second = refresher.run(far(), &no_progress).await;
    assert!(second.pass_complete);
    assert_eq!(second.sweep.enriched_complete, 10);
}

#[tokio::test(start_paused = true)]
async fn a_run_warms_from_a_walk_that_completes_only_uncached_accounts_and_reuses_it() {
    use std::sync::atomic::Ordering::Relaxed;
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..30).map(|n| finding([A, B, C][n % 3], n)));
    let source = Arc::new(StaticSource::new([account(A, &[]), account(B, &[("team", "blue")]), account(C, &[])]));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state.clone(), Some(source.clone()));
    // A is already known (the stream looked it up): the walk leaves it alone.
    refresher.sweeper.directory.prefetch(&[A.to_owned()], far()).await;
    assert_eq!(source.total_lookups(), 1);

    let run = refresher.run(far(), &no_progress).await;
    let warm = run.warm.clone().expect("the run warms from a walk");
    assert_eq!((warm.accounts, warm.already_cached, warm.cached, warm.failed), (3, 1, 2, 0), "{warm:?}");
    assert_eq!(source.completions.load(Relaxed), 2);
    assert_eq!(source.total_lookups(), 1, "the sweep found every account warm: no per-account lookups");
    assert!(run.pass_complete);
    assert_eq!((run.sweep.enriched_complete, run.sweep.still_partial), (30, 0), "{:?}", run.sweep);

    // The next run reuses the walk and completes nothing known.
    let next = refresher.run(far(), &no_progress).await;
    assert_eq!(next.warm.map(|w| (w.already_cached, w.cached)), Some((3, 0)));
    assert_eq!(source.completions.load(Relaxed), 2);
    assert_eq!(next.sweep.current, 30, "nothing to write");
    assert_eq!(source.walks.load(Relaxed), 1);
    // After WALK_REUSE the tree is walked again (new accounts show up there).
    tokio::time::advance(WALK_REUSE).await;
    refresher.run(far(), &no_progress).await;
    assert_eq!(source.walks.load(Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn the_pass_leaves_walked_accounts_to_the_warm_up_and_completes_them_in_the_same_run() {
    use std::sync::atomic::Ordering::Relaxed;
    let ids: Vec<String> = (0..40).map(|n| format!("{:012}", 600_000_000_000u64 + n)).collect();
    let hub = Arc::new(InMemoryHub::default());
    hub.import(ids.iter().flat_map(|a| (0..3).map(move |n| finding(a, n))));
    // Organizations takes a second a call: the warm-up (8 at a time) needs 5 s for all 40.
    let source = Arc::new(StaticSource::new(ids.iter().map(|a| account(a, &[]))).with_latency(Duration::from_secs(1)));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state, Some(source.clone()));
    let run = refresher.run(far(), &no_progress).await;
    assert_eq!(source.total_lookups(), 0, "no account looked up on its own: the warm-up completed them all");
    assert_eq!(source.completions.load(Relaxed), 40);
    assert!(run.extra_passes >= 1, "{run:?}");
    assert!(run.pass_complete);
    assert!(run.sweep.balances());
    assert_eq!(run.sweep.enriched_complete, 120, "{:?}", run.sweep);
    assert!(run.sweep.skipped.get("awaiting_warm_up").is_some_and(|&n| n > 0), "{:?}", run.sweep);
    assert_eq!(hub.call_count(), 40, "each account's findings written once, complete: no Partial write first");
    for a in &ids {
        let stored = hub.stored(&finding(a, 2).identifier()).unwrap();
        assert_eq!(stored.user_defined_fields[keys::FINDING_ENRICHED], "True", "{a}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_walk_leaves_the_sweep_to_look_accounts_up_itself() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..10).map(|n| finding(A, n)));
    let source = Arc::new(StaticSource::new([account(A, &[])]));
    source.walk_fails.store(true, std::sync::atomic::Ordering::Relaxed);
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state, Some(source.clone()));
    let run = refresher.run(far(), &no_progress).await;
    assert!(run.warm.is_none());
    assert!(run.warm_error.as_deref().is_some_and(|e| e.contains("ListAccountsForParent")), "{:?}", run.warm_error);
    assert_eq!(run.sweep.enriched_complete, 10);
    assert_eq!(source.lookups(A), 1);
    // A failed walk is not retried at every run (it would spend the budget on walks).
    refresher.run(far(), &no_progress).await;
    assert_eq!(source.walks.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn one_run_drains_a_queue_of_many_accounts_twenty_at_a_time() {
    let ids: Vec<String> = (0..45).map(|n| format!("{:012}", 400_000_000_000u64 + n)).collect();
    let hub = Arc::new(InMemoryHub::default());
    hub.import(ids.iter().flat_map(|a| (0..3).map(move |n| finding(a, n))));
    let source = Arc::new(StaticSource::new(ids.iter().map(|a| account(a, &[]))));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state.clone(), None);
    state.enqueue(&ids).await.unwrap();
    let run = refresher.run(far(), &no_progress).await;
    assert_eq!(run.accounts.len(), 45, "three sweeps of at most 20 accounts, one run");
    assert_eq!((run.sweep.examined, run.sweep.enriched_complete), (135, 135), "{:?}", run.sweep);
    assert!(run.sweep.balances());
    assert!(state.queued().await.unwrap().is_empty());
    assert!(!run.pass_complete, "the pass over every finding waits for the next run");
}

#[tokio::test(start_paused = true)]
async fn a_warm_up_cut_short_counts_the_accounts_it_did_not_reach_not_failed() {
    use securityhub_enricher::service::directory::WarmScope;
    let ids: Vec<String> = (0..40).map(|n| format!("{:012}", 500_000_000_000u64 + n)).collect();
    let source = Arc::new(StaticSource::new(ids.iter().map(|a| account(a, &[]))).with_latency(Duration::from_secs(1)));
    let directory = EnricherBuilder::new().source(source.clone()).build().directory;
    // 8 at a time, a second each: two rounds done by 2.5 s, the third cut off, the rest never begun.
    let report = directory
        .warm(source.as_ref(), WarmScope::Everything, Instant::now() + Duration::from_millis(2500))
        .await
        .unwrap();
    assert_eq!((report.accounts, report.cached, report.failed, report.not_reached), (40, 16, 0, 24), "{report:?}");
    assert_eq!(
        source.completions.load(std::sync::atomic::Ordering::Relaxed),
        24,
        "no account begun after the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_waits_for_slow_lookups_and_an_outage_costs_one_extra_pass() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..30).map(|n| finding(A, n)));
    // Organizations answers in 1.5 s, past the stream's 1 s lookup budget: a sweep waits for it
    // until its own deadline instead, so the first pass writes every finding complete, none
    // Partial first.
    let source = Arc::new(StaticSource::new([account(A, &[])]).with_latency(Duration::from_millis(1500)));
    let slow = EnricherBuilder::new()
        .source(source.clone())
        .hub(hub.clone())
        .lookups(8, Duration::from_secs(1))
        .build_sweeper(hub.clone(), READS);
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(slow, state.clone(), None);
    let run = refresher.run(far(), &no_progress).await;
    assert_eq!(run.extra_passes, 0, "{run:?}");
    assert!(run.pass_complete);
    assert_eq!((run.sweep.still_partial, run.sweep.enriched_complete), (0, 30), "{:?}", run.sweep);
    assert_eq!(run.sweep.writes.updates.findings_per_call, vec![30], "each finding written once");
    assert_eq!(hub.stored(&finding(A, 7).identifier()).unwrap().user_defined_fields[keys::FINDING_ENRICHED], "True");

    // While Organizations is down, a run makes one extra pass and stops: no spinning.
    hub.import((30..40).map(|n| finding(B, n)));
    let down = Arc::new(StaticSource::new([account(B, &[])]));
    down.fail(&[B]);
    let refresher = Refresher::new(sweeper(&hub, down), state, None);
    let outage = refresher.run(far(), &no_progress).await;
    assert_eq!(outage.extra_passes, 1, "{outage:?}");
    assert_eq!(outage.sweep.still_partial, 20, "ten findings of B, Partial in both passes");
}

#[tokio::test(start_paused = true)]
async fn two_runs_never_overlap_and_a_pass_waits_for_its_interval_while_the_queue_is_taken_at_once() {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..10).map(|n| finding(A, n)).chain((0..10).map(|n| finding(B, n))));
    let source = Arc::new(StaticSource::new([account(A, &[]), account(B, &[])]));
    let state = Arc::new(InMemorySweepState::default());
    let refresher = Refresher::new(sweeper(&hub, source.clone()), state.clone(), None)
        .with_pass_interval(Duration::from_secs(15 * 60));

    // Another environment's run holds the lease: this one does nothing, reads nothing.
    *state.lease.lock().unwrap() = Some(("other".into(), i64::MAX));
    let blocked = refresher.run(far(), &no_progress).await;
    assert_eq!(blocked.idle, Some("another run holds the lease"));
    assert_eq!(hub.reads.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Its lease expired (the holder died): taken over.
    *state.lease.lock().unwrap() = Some(("other".into(), 0));
    let first = refresher.run(far(), &no_progress).await;
    assert!(first.pass_complete && first.idle.is_none(), "{first:?}");
    assert_eq!(first.sweep.enriched_complete, 20);
    assert_eq!(*state.lease.lock().unwrap(), None, "given back at the end of the run");

    // A minute later: no pass is due, nothing queued.
    let idle = refresher.run(far(), &no_progress).await;
    assert_eq!(idle.idle, Some("no pass is due and the queue is empty"));

    // An account the stream could not resolve is queued: the next run takes it at once.
    source.update(account(B, &[("team", "blue")]));
    refresher.sweeper.directory.invalidate(&[B.to_owned()]).await.unwrap();
    state.enqueue(&[B.to_owned()]).await.unwrap();
    let queued = refresher.run(far(), &no_progress).await;
    assert_eq!(queued.accounts, vec![B.to_owned()]);
    assert_eq!((queued.sweep.examined, queued.sweep.enriched_complete), (10, 10), "{:?}", queued.sweep);
    assert_eq!(hub.stored(&finding(B, 3).identifier()).unwrap().user_defined_fields["team"], "blue");
}

#[tokio::test(start_paused = true)]
async fn a_queue_of_most_of_the_organization_is_served_by_one_pass_and_then_emptied() {
    // A cold start: the stream queued more accounts than a few sweeps of 20 take.
    let ids: Vec<String> = (0..120).map(|n| format!("{:012}", 500_000_000_000u64 + n)).collect();
    let hub = Arc::new(InMemoryHub::default());
    hub.import(ids.iter().map(|id| finding(id, 0)));
    let source = Arc::new(StaticSource::new(ids.iter().map(|id| account(id, &[]))));
    let state = Arc::new(InMemorySweepState::default());
    state.enqueue(&ids).await.unwrap();
    let refresher = Refresher::new(sweeper(&hub, source), state.clone(), None);
    let run = refresher.run(far(), &no_progress).await;
    assert!(run.accounts.is_empty(), "the pass over every finding, not 6 sweeps of 20 accounts");
    assert_eq!((run.queued, run.sweep.enriched_complete), (120, 120), "{run:?}");
    assert_eq!(run.sweep.get_findings_calls, 3, "two pages of CSPM findings and the new hub's page");
    assert!(state.queued().await.unwrap().is_empty(), "emptied once the pass left nothing Partial");
}
