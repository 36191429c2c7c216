//! Logs at INFO and above never carry contact details or whole findings. Its own test binary:
//! tracing caches each callsite's interest process-wide, so a subscriber scoped to one test
//! among parallel others can miss events; here the subscriber is the process's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::telemetry::Report;
use serde_json::{Value, json};
use tokio::time::Instant;

mod common;
use common::{account_with_contact, encode, event, finding};

/// Collects what the handler logs at INFO and above.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_carry_contact_details_or_whole_findings() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_writer(move || writer.clone()).init();
    let (enricher, hub) = common::in_memory_enricher(account_with_contact(), Rate { per_second: 1000.0, burst: 1000 });
    let mut with_note = finding("noted");
    with_note["Note"] = json!({"Text": "call Jane Secret", "UpdatedBy": "analyst"});
    let records = vec![
        json!({"eventID": "s:0", "data": encode(&event(json!([finding("a"), with_note])))}),
        json!({"eventID": "s:1", "data": "%%%"}),
        json!({"eventID": "s:2", "data": encode(&json!({"source": "aws.guardduty", "detail-type": "x"}))}),
    ];
    let batch: IncomingBatch = serde_json::from_value(Value::Array(records)).unwrap();
    let report = enricher.handle(batch, Instant::now() + Duration::from_secs(60)).await;
    // What the Lambda's main does with every report: the per-batch line, then metrics.
    report.log();
    assert_eq!(report.tally.findings_enriched, 2);
    assert!(
        hub.findings.lock().unwrap().values().any(|p| p
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("jane.secret@example.com")),
        "the contact did reach Security Hub"
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("batch done"), "the subscriber captured the handler's logs: {logs}");
    for secret in ["jane.secret@example.com", "Jane Secret", "+1-555-0199", "ProductArn\":"] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs:\n{logs}");
    }
}
