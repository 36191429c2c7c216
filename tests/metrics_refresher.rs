//! The refresher's EMF documents: valid, and covering every refresher series of the dashboard
//! with the run's own figures. (Its own test binary: the recorder is process-global.)

#[path = "common/emf.rs"]
mod emf;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, active_finding};
use loadtest::fakes::posture::InMemoryPostureStore;
use loadtest::fakes::sweep_state::InMemorySweepState;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord};
use securityhub_enricher::core::finding::{Finding, Severity};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::ports::sweep_state::SweepState;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::telemetry;

/// A finding of each severity in turn, first observed on a day of November.
fn finding(account: &str, n: usize) -> Finding {
    let mut finding = active_finding(account, n);
    let label = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"][n % 5];
    finding.severity = Some(Severity { label: Some(label.to_owned()) });
    finding.first_observed_at = Some(format!("2026-11-{:02}T00:00:00Z", 1 + n % 28));
    finding
}

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
    )
    .with_posture(Arc::new(InMemoryPostureStore::default()), 20);
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
    // The pass's posture counts, as the refresher writes them after the flush.
    let posture = pass.posture.as_ref().expect("the pass reached its end and counted");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let documents = telemetry::posture_documents(posture, "refresher", now_ms);
    // Totals, one owner (unowned), one environment and one criticality (both unset).
    assert_eq!(documents.len(), 4);
    for document in &documents {
        out.extend_from_slice(document.as_bytes());
        out.push(b'\n');
    }
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
    // The pass counted every finding, each by every grouping.
    assert_eq!(values["PostureFindings"], 30.0);
    assert_eq!(values["PostureUnowned"], 30.0);
    assert_eq!(values["OpenFindingsByOwner"], 30.0);
    assert_eq!(values["OpenFindingsByEnvironment"], 30.0);
    assert_eq!(values["OpenFindingsByCriticality"], 30.0);
    assert_eq!(values["OpenCriticalByOwner"], 6.0);
    assert_eq!(values["PostureComplete"], 30.0);
    // The oldest critical finding (n = 0) was first observed on 2026-11-01.
    let oldest = now_ms as f64 / 1000.0 - 1_793_491_200.0;
    assert!((values["OldestCriticalAgeByOwner"] - oldest).abs() < 5.0, "{}", values["OldestCriticalAgeByOwner"]);
}
