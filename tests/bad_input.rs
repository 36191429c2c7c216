//! A corpus of bad input: nothing panics, every record and finding ends in exactly one
//! outcome, and nothing that can never succeed is handed back for retry.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use loadtest::fakes::hub::InMemoryHub;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::service::batch_report::BatchReport;
use securityhub_enricher::service::handler::Enricher;
use serde_json::{Value, json};
use tokio::time::Instant;

mod common;
use common::{A, account_with_contact, encode, event, finding};

fn enricher() -> (Enricher, Arc<InMemoryHub>) {
    common::in_memory_enricher(account_with_contact(), Rate { per_second: 10_000.0, burst: 10_000 })
}

async fn run(records: Vec<Value>) -> BatchReport {
    let (enricher, _) = enricher();
    let batch: IncomingBatch = serde_json::from_value(Value::Array(records)).unwrap();
    let report = enricher.handle(batch, Instant::now() + Duration::from_secs(60)).await;
    assert!(report.tally.balances(), "{}", report.tally);
    report
}

#[test]
fn top_level_garbage_is_a_clean_error() {
    for body in ["", "[", "{\"Records\": [", "null", "42", "\"text\"", "{}", "{\"Records\": 3}", "[1, 2", "\u{feff}[]"]
    {
        assert!(serde_json::from_str::<IncomingBatch>(body).is_err(), "{body:?} should not parse");
    }
}

#[tokio::test]
async fn damaged_records_are_poison_never_retried() {
    let good = encode(&event(json!([finding("ok")])));
    let truncated_event = base64::engine::general_purpose::STANDARD
        .encode(&serde_json::to_vec(&event(json!([finding("t")]))).unwrap()[..40]);
    let records = vec![
        json!({"eventID": "s:0", "data": good}),
        json!({"eventID": "s:1", "data": &good[..good.len() - 7]}),
        json!({"eventID": "s:2", "data": truncated_event}),
        json!({"eventID": "s:3", "data": 42}),
        json!({"eventID": null, "data": good}),
        json!({"data": good}),
        json!({"eventID": "s:6"}),
        json!("a string"),
        json!(null),
        json!({"eventID": "", "data": good}),
    ];
    let report = run(records).await;
    assert_eq!((report.tally.records_processed, report.tally.records_poison), (1, 9), "{}", report.tally);
    assert!(report.response.batch_item_failures.is_empty(), "poison never blocks the shard");
}

#[tokio::test]
async fn odd_findings_each_get_one_outcome() {
    let mut huge = finding("huge");
    huge["Description"] = json!("x".repeat(1_000_000));
    let mut unicode = finding("ユニコード-🔥-\u{202e}");
    unicode["AwsAccountName"] = json!("Ünïcødé 账户 🔥");
    unicode["UserDefinedFields"] = json!({"ключ": "значение", "emoji🔥": "✓"});
    let findings = json!([
        finding("dup"), finding("dup"), huge, unicode,
        {"Id": "no-product", "AwsAccountId": A},
        {"ProductArn": "p", "AwsAccountId": A},
        {"Id": "wrong-types", "ProductArn": "p", "AwsAccountId": 111122223333u64},
        {"Id": "bad-udf", "ProductArn": "p", "AwsAccountId": A, "UserDefinedFields": ["not", "a", "map"]},
        {"Id": "no-account", "ProductArn": "p"},
        {"Id": "bad-time", "ProductArn": "p", "AwsAccountId": A, "UpdatedAt": "yesterday"},
        {"Id": "null-note", "ProductArn": "p", "AwsAccountId": A, "Note": null},
        []
    ]);
    let report = run(vec![json!({"eventID": "s:0", "data": encode(&event(findings))})]).await;
    let t = &report.tally;
    assert_eq!(t.findings_in, 12);
    assert_eq!(t.findings_skipped.get("superseded"), Some(&1));
    assert_eq!(t.findings_skipped.get("malformed_finding"), Some(&6), "{t}");
    assert_eq!(t.findings_enriched, 5, "dup, huge, unicode, bad-time, null-note");
    assert!(report.response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn ten_thousand_records_over_six_megabytes() {
    let records: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut f = finding(&format!("f{i}"));
            f["Description"] = json!("d".repeat(500));
            json!({"eventID": format!("s:{i}"), "data": encode(&event(json!([f])))})
        })
        .collect();
    let size = serde_json::to_vec(&records).unwrap().len();
    assert!(size > 6 * 1024 * 1024, "{size} bytes");
    let report = run(records).await;
    assert_eq!(report.tally.findings_enriched, 10_000);
    assert_eq!(report.writes.updates.findings_per_call.len(), 100, "one account, one payload: ⌈10,000/100⌉ calls");
}

#[tokio::test]
async fn empty_and_findingless_batches() {
    let report = run(vec![]).await;
    assert_eq!(report.tally.records_in, 0);
    let report = run(vec![json!({"eventID": "s:0", "data": encode(&json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported"}))})]).await;
    assert_eq!(report.tally.records_skipped, 1);
}
