//! The refresher's EMF documents: valid, and covering every refresher series of the dashboard
//! with the run's own figures. (Its own test binary: the recorder is process-global.)

#[path = "common/emf.rs"]
mod emf;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, active_finding as finding};
use loadtest::fakes::sweep_state::InMemorySweepState;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::telemetry;

#[tokio::test]
async fn the_refreshers_metrics_cover_its_dashboard_series() {
    let emf = telemetry::install_emf("refresher").unwrap();
    let (a, b) = ("111122223333", "444455556666");
    let hub = Arc::new(InMemoryHub::default());
    hub.import((0..30).map(|n| finding(if n % 3 == 0 { b } else { a }, n)));
    let account = |id: &str| AccountRecord::Found(AccountMetadata::from_finding_name(id, Some("n")));
    let source = Arc::new(StaticSource::new([account(a), account(b)]));
    let state = Arc::new(InMemorySweepState::default());
    state.enqueue(&[b.to_owned()]).await.unwrap();
    let refresher = Refresher::new(
        EnricherBuilder::new()
            .source(source.clone())
            .hub(hub.clone())
            .build_sweeper(hub, Rate { per_second: 100.0, burst: 100 }),
        state,
        Some(source),
    );
    // One run for the queue (B, looked up), one for the pass (which begins with the walk and
    // caches A).
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(60);
    let queued = refresher.run(deadline(), &|_| {}).await;
    let pass = refresher.run(deadline(), &|_| {}).await;
    assert_eq!((queued.accounts.len(), pass.warm.as_ref().map(|w| w.cached)), (1, Some(1)));
    for report in [&queued, &pass] {
        telemetry::publish(report, &BTreeMap::new());
    }

    let mut out = Vec::new();
    emf.flush(&mut out).unwrap();
    let (emitted, values) = emf::parse(&String::from_utf8(out).unwrap(), "refresher");
    let wanted = emf::dashboard_metrics(&emf::dashboard(), "refresher");
    assert!(wanted.len() >= 5, "the dashboard parser found {} refresher series", wanted.len());
    let missing: Vec<_> = wanted.difference(&emitted).collect();
    assert!(missing.is_empty(), "the dashboard reads refresher metrics the code does not emit: {missing:?}");
    assert_eq!(values["SweepFindingsExamined"], (queued.sweep.examined + pass.sweep.examined) as f64);
    assert_eq!(values["AccountsWarmed"], 1.0);
    // RefresherStalledAlarm's metric: one per run that completed with its state saved.
    assert_eq!(values["RefreshRunsCompleted"], 2.0);
    assert_eq!(values["FindingsEnriched"], (queued.sweep.enriched_complete + pass.sweep.enriched_complete) as f64);
}
