//! Posture counts on in-memory fakes with tokio's paused clock: a pass that spans runs keeps
//! its counts so far and completes them, the completed pass's counts add up to every finding
//! and name the owners routing gave them (top N, `other`, `unowned`); the operator's sweep of
//! every finding keeps its counts, a sweep of a few accounts does not.

use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, active_finding};
use loadtest::fakes::posture::InMemoryPostureStore;
use loadtest::fakes::sweep_state::InMemorySweepState;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, ContactLookup, OrgUnit};
use securityhub_enricher::core::finding::{Finding, Severity};
use securityhub_enricher::core::posture::{Grouping, OTHER, UNOWNED, UNSET};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::routing::{RoutingPolicy, RoutingRules};
use securityhub_enricher::ports::posture::PostureStore;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::service::sweep::SweepReport;
use tokio::time::Instant;

const BLUE: &str = "111111111111";
const RED: &str = "222222222222";
const NOBODY: &str = "333333333333";
const READS: Rate = Rate { per_second: 2.0, burst: 4 };

fn account(id: &str, ou: &str, tags: &[(&str, &str)]) -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: id.into(),
        name: Some(format!("name-{id}")),
        ou_path: vec![
            OrgUnit { id: "r-1".into(), name: "Root".into() },
            OrgUnit { id: "ou-1".into(), name: ou.into() },
        ],
        tags: tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        security_contact: ContactLookup::NotSet,
    })
}

fn finding(account: &str, n: usize) -> Finding {
    let mut finding = active_finding(account, n);
    let label = ["CRITICAL", "HIGH", "LOW", "MEDIUM"][n % 4];
    finding.severity = Some(Severity { label: Some(label.to_owned()) });
    finding.first_observed_at = Some(format!("2026-10-{:02}T00:00:00Z", 1 + n % 30));
    finding
}

fn no_progress(_: &SweepReport) {}

/// 500 findings of the blue team's account, 300 of the red team's, 200 of an account without
/// an owner tag.
fn organization(top_owners: usize) -> (Refresher, Arc<InMemoryPostureStore>) {
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..1000).map(|n| {
        finding(
            if n < 500 {
                BLUE
            } else if n < 800 {
                RED
            } else {
                NOBODY
            },
            n,
        )
    }));
    let source = Arc::new(StaticSource::new([
        account(BLUE, "Workloads", &[("owner", "blue")]),
        account(RED, "Workloads", &[("owner", "red")]),
        account(NOBODY, "Sandbox", &[]),
    ]));
    // Routing as a deployment sets it: the Workloads OU is production; owners from the owner tag.
    let policy =
        RoutingPolicy::parse(r#"{"rules": [{"ou_path_prefix": "Root/Workloads", "set": {"environment": "prod"}}]}"#);
    let routing = RoutingRules { policy: policy.unwrap(), owner_tag_key: "owner".into() };
    let sweeper =
        EnricherBuilder::new().source(source.clone()).hub(hub.clone()).routing(routing).build_sweeper(hub, READS);
    let store = Arc::new(InMemoryPostureStore::default());
    let refresher = Refresher::new(sweeper, Arc::new(InMemorySweepState::default()), Some(source))
        .with_posture(store.clone(), top_owners);
    (refresher, store)
}

#[tokio::test(start_paused = true)]
async fn a_pass_over_several_runs_keeps_its_counts_so_far_and_completes_them() {
    let (refresher, store) = organization(20);
    // 2 reads/s with a burst of 4, and 20 s kept for writing: a 22 s run reads 7 of 10 pages.
    let first = refresher.run(Instant::now() + Duration::from_secs(22), &no_progress).await;
    assert!(!first.pass_complete);
    let progress = store.progress().await.unwrap().expect("the running pass's counts so far");
    assert_eq!(progress.counts.total, first.sweep.examined as u64);
    assert!(store.last_pass().await.unwrap().is_none(), "no pass has completed yet");
    assert!(first.posture.is_none());

    let mut runs = 1;
    let last = loop {
        let report = refresher.run(Instant::now() + Duration::from_secs(22), &no_progress).await;
        runs += 1;
        if report.pass_complete {
            break report;
        }
        assert!(runs < 10, "the pass never ends");
    };
    assert!(store.progress().await.unwrap().is_none(), "no pass is running");
    let pass = store.last_pass().await.unwrap().expect("the completed pass's counts");
    assert_eq!(last.posture.as_ref(), Some(&pass));
    assert_eq!(pass.started_at, progress.started_at, "one pass, from its first run to its last");
    let counts = &pass.counts;
    assert_eq!(counts.total, 1000, "every finding once, across {runs} runs");
    assert_eq!((counts.complete, counts.partial, counts.stale), (1000, 0, 0));
    let owners: Vec<(&str, u64, u64)> =
        counts.by_owner.iter().map(|(k, t)| (k.as_str(), t.total(), t.critical)).collect();
    assert_eq!(owners, [("blue", 500, 125), ("red", 300, 75), (UNOWNED, 200, 50)]);
    assert_eq!((counts.by_environment["prod"].total(), counts.by_environment[UNSET].total()), (800, 200));
    let by_ou = counts.by_ou_depth(Some(2));
    assert_eq!((by_ou["Root/Workloads"].total(), by_ou["Root/Sandbox"].total()), (800, 200));
    assert_eq!(counts.by_ou_depth(Some(1))["Root"].total(), 1000);
    // Most critical first; the oldest critical finding (n = 0, first observed 1 October) is blue's.
    let rows = counts.rows(Grouping::Owner, None);
    assert_eq!(rows[0].0, "blue");
    assert_eq!(rows[0].1.oldest_critical, Some(1_790_812_800));
}

#[tokio::test(start_paused = true)]
async fn beyond_the_top_owners_the_pass_counts_other() {
    let (refresher, store) = organization(1);
    let far = Instant::now() + Duration::from_secs(3600);
    assert!(refresher.run(far, &no_progress).await.pass_complete);
    let counts = store.last_pass().await.unwrap().unwrap().counts;
    let owners: Vec<(&str, u64)> = counts.by_owner.iter().map(|(k, t)| (k.as_str(), t.total())).collect();
    assert_eq!(owners, [("blue", 500), (OTHER, 300), (UNOWNED, 200)]);
}

#[tokio::test(start_paused = true)]
async fn the_operators_sweep_of_every_finding_keeps_its_counts_and_of_a_few_accounts_does_not() {
    let (refresher, store) = organization(20);
    let far = Instant::now() + Duration::from_secs(3600);
    let few = refresher.complete(&[RED.to_owned()], far, &no_progress).await;
    assert!(few.pass_complete && few.posture.is_none());
    assert!(store.last_pass().await.unwrap().is_none(), "300 findings of one account are no organization's posture");
    let all = refresher.complete(&[], far, &no_progress).await;
    assert!(all.pass_complete);
    assert_eq!(store.last_pass().await.unwrap().map(|p| p.counts.total), Some(1000));
    assert!(store.progress().await.unwrap().is_none(), "the operator's sweep leaves the refresher's progress alone");
}
