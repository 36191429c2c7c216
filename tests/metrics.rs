//! Runs the handler on a fixture batch with the EMF recorder installed, parses the documents it
//! writes, and checks them against the EMF specification's limits and against every metric the
//! dashboard references. (Its own test binary: the recorder is process-global.)

#[path = "common/emf.rs"]
mod emf;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::{InMemoryHub, ScriptedReply};
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord};
use securityhub_enricher::core::cache_entry::CacheTimes;
use securityhub_enricher::ports::pending::StoreUsage;
use securityhub_enricher::telemetry::{self, CallCount};

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
    let mut report = enricher.handle(batch, tokio::time::Instant::now() + Duration::from_secs(30)).await;
    // What the pending-writes store's table adapter reports for a batch (its sizing is tested
    // against the local stack in tests/local_stack/pending_store.rs; the fake does not size).
    report.pending.store = Some(StoreUsage { requests: 3, write_units: 7, read_units: 16 });
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
    let (emitted, values) = emf::parse(&text, "enricher");
    let wanted = emf::dashboard_metrics(&emf::dashboard(), "enricher");
    assert!(wanted.len() >= 15, "the dashboard parser found {} metrics", wanted.len());
    let missing: Vec<_> = wanted.difference(&emitted).collect();
    assert!(missing.is_empty(), "the dashboard reads metrics the code does not emit: {missing:?}");

    // The figures are the report's, not made up.
    assert_eq!(values["RecordsIn"], report.tally.records_in as f64);
    assert_eq!(values["FindingsEnriched"], report.tally.findings_enriched as f64);
    assert_eq!(values["UpdateCalls"], report.writes.updates.findings_per_call.len() as f64);
    assert_eq!((values["PendingStoreWriteUnits"], values["PendingStoreReadUnits"]), (7.0, 16.0));
}
