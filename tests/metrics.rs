//! Runs the handler on a fixture batch with the EMF recorder installed, parses the documents it
//! writes, and checks them against the EMF specification's limits and against every metric the
//! dashboard references. (Its own test binary: the recorder is process-global.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, ScriptedReply};
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord};
use securityhub_enricher::core::cache_entry::CacheTimes;
use securityhub_enricher::telemetry::{self, CallCount, Metric, NAMESPACE};
use serde_json::Value;

/// (metric name, dimension names) pairs a dashboard reads, from explicit metric arrays and from
/// SEARCH expressions (`{Namespace,Dim1,Dim2} MetricName="X"`).
/// The dashboard's series of one function (the investigator's are the investigator's own
/// EMF documents, not the enricher's).
fn dashboard_metrics(body: &Value, function: &str) -> BTreeSet<(String, BTreeSet<String>)> {
    let mut wanted = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        let Some(metrics) = widget["properties"]["metrics"].as_array() else { continue };
        for entry in metrics {
            let entry = entry.as_array().expect("each metrics entry is an array");
            if let Some(expression) = entry[0].get("expression").and_then(Value::as_str) {
                let Some(start) = expression.find(&format!("{{{NAMESPACE},")) else { continue };
                if !expression.contains(&format!("Function=\"{function}\"")) {
                    continue;
                }
                let schema = &expression[start + 1..start + expression[start..].find('}').unwrap()];
                let dims: BTreeSet<String> = schema.split(',').skip(1).map(str::to_owned).collect();
                let name = expression.split("MetricName=\"").nth(1).unwrap().split('"').next().unwrap();
                wanted.insert((name.to_owned(), dims));
            } else if entry[0] == NAMESPACE {
                let strings: Vec<&str> = entry.iter().filter_map(Value::as_str).collect();
                if !strings[2..].chunks(2).any(|pair| pair == ["Function", function]) {
                    continue;
                }
                let dims = strings[2..].chunks(2).map(|pair| pair[0].to_owned()).collect();
                wanted.insert((strings[1].to_owned(), dims));
            }
        }
    }
    wanted
}

#[tokio::test]
async fn emf_documents_are_valid_and_cover_the_dashboard() {
    let emf = telemetry::install_emf("enricher").unwrap();
    let hub = Arc::new(InMemoryHub::default());
    // A failure and a throttle, so the error series have data too.
    hub.script([ScriptedReply::Throttle]);
    hub.script((0..10).map(|_| ScriptedReply::Unprocessed { code: "InternalFailure".into(), ids: vec![] }));
    let account = |id: &str| AccountRecord::Found(AccountMetadata::from_finding_name(id, Some("n")));
    let source = StaticSource::new([account("111122223333"), account("444455556666")]);
    let times = CacheTimes {
        fresh: Duration::from_secs(60),
        negative: Duration::from_secs(60),
        unknown_contact: Duration::from_secs(60),
        stale_grace: Duration::from_secs(60),
        memory: Duration::from_secs(60),
        memory_capacity: 10,
    };
    let enricher = EnricherBuilder::new()
        .source(Arc::new(source))
        .cache_times(times)
        .lookups(4, Duration::from_secs(5))
        .hub(hub)
        .backoff(Duration::from_millis(1), 3)
        .deadline_margin(Duration::from_millis(10))
        .build();
    let batch = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/tests/fixtures/pipe_batch.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let report = enricher.handle(batch, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    // What the ApiCalls interceptor reports for an invocation (its counting is tested against
    // the local stack in tests/local_aws.rs).
    let calls = BTreeMap::from([
        (
            ("Organizations".to_owned(), "DescribeAccount".to_owned()),
            CallCount { calls: 2, attempts: 3, throttled: 1, errors: 0 },
        ),
        (
            ("SecurityHub".to_owned(), "BatchUpdateFindings".to_owned()),
            CallCount { calls: 5, attempts: 5, throttled: 1, errors: 1 },
        ),
    ]);
    telemetry::record_cold_start();
    telemetry::publish(&report, &calls);

    let mut out = Vec::new();
    emf.flush(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut emitted: BTreeSet<(String, BTreeSet<String>)> = BTreeSet::new();
    let mut values: BTreeMap<String, f64> = BTreeMap::new();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).expect("each line is one JSON document");
        let aws = &doc["_aws"];
        let timestamp = aws["Timestamp"].as_u64().expect("integer timestamp");
        assert!(timestamp.abs_diff(now_ms) < 60_000, "timestamp in milliseconds since the epoch");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100, "1..=100 metrics per document");
        for set in directive["Dimensions"].as_array().unwrap() {
            let set: BTreeSet<String> =
                set.as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
            assert!(!set.is_empty() && set.len() <= 30, "≤ 30 dimensions per set");
            for dim in &set {
                assert!(doc[dim].is_string(), "dimension {dim} has a value in the document");
            }
            assert_eq!(doc["Function"], "enricher");
            for metric in metrics {
                let name = metric["Name"].as_str().unwrap().to_owned();
                assert!(doc[&name].is_number() || doc[&name].is_array(), "{name} has a value");
                let known = <Metric as strum::IntoEnumIterator>::iter()
                    .find(|m| m.name() == name)
                    .expect("only metrics named in telemetry::Metric");
                let labels: BTreeSet<String> =
                    std::iter::once("Function").chain(known.labels().iter().copied()).map(str::to_owned).collect();
                assert_eq!(set, labels, "{name} carries its documented dimensions");
                if let Some(v) = doc[&name].as_f64() {
                    *values.entry(name.clone()).or_default() += v;
                }
                emitted.insert((name, set.clone()));
            }
        }
    }

    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/dashboards/enricher.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let wanted = dashboard_metrics(&body, "enricher");
    assert!(wanted.len() >= 15, "the dashboard parser found {} metrics", wanted.len());
    let missing: Vec<_> = wanted.difference(&emitted).collect();
    assert!(missing.is_empty(), "the dashboard reads metrics the code does not emit: {missing:?}");

    // The figures are the report's, not made up.
    assert_eq!(values["RecordsIn"], report.tally.records_in as f64);
    assert_eq!(values["FindingsEnriched"], report.tally.findings_enriched as f64);
    assert_eq!(values["UpdateCalls"], report.writes.updates.findings_per_call.len() as f64);
}
