//! The investigator's EMF documents: valid, and covering every investigator series of the
//! dashboard with the pass report's own figures, every count it keeps included. (Its own test
//! binary: the recorder is process-global.)

#[path = "common/emf.rs"]
mod emf;

use std::collections::BTreeMap;

use securityhub_enricher::service::investigator::PassReport;
use securityhub_enricher::telemetry;

#[tokio::test]
async fn every_count_of_the_pass_is_a_metric_the_dashboard_reads() {
    let emf = telemetry::install_emf("investigator").unwrap();
    // Distinct figures, so that a metric fed from the wrong count shows.
    let report = PassReport {
        active: 78,
        started: 1,
        waiting: 2,
        not_covered: 3,
        joined: 4,
        still_running: 5,
        completed: 6,
        failed: 7,
        retried: 8,
        not_due: 9,
        claims_lost: 10,
        errors: 23,
        overdue_total: 11,
        ..PassReport::default()
    };
    assert!(report.balances());
    telemetry::publish(&report, &BTreeMap::new());

    let mut out = Vec::new();
    emf.flush(&mut out).unwrap();
    let (emitted, values) = emf::parse(&String::from_utf8(out).unwrap(), "investigator");
    let wanted = emf::dashboard_metrics(&emf::dashboard(), "investigator");
    assert!(wanted.len() >= 12, "the dashboard parser found {} investigator series", wanted.len());
    let missing: Vec<_> = wanted.difference(&emitted).collect();
    assert!(missing.is_empty(), "the dashboard reads investigator metrics the code does not emit: {missing:?}");
    for (metric, figure) in [
        ("InvestigationsStarted", report.started),
        ("InvestigationsPending", report.waiting),
        ("InvestigationsNotCovered", report.not_covered),
        ("InvestigationsJoined", report.joined),
        ("InvestigationsRunning", report.still_running),
        ("InvestigationsCompleted", report.completed),
        ("InvestigationsFailed", report.failed),
        ("InvestigationsRetried", report.retried),
        ("InvestigationsNotDue", report.not_due),
        ("InvestigationsClaimsLost", report.claims_lost),
        ("InvestigationErrors", report.errors),
        ("InvestigationsOverdue", report.overdue_total),
    ] {
        assert_eq!(values[metric], figure as f64, "{metric}");
    }
}
