//! The handler on JSON fixtures of both delivery shapes, with in-memory stand-ins for the AWS
//! adapters: outcomes, the partial-batch response, request counts, and fault handling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::{InMemoryStore, StaticSource};
use loadtest::fakes::enricher::{EnricherBuilder, test_cache_times};
use loadtest::fakes::hub::{InMemoryHub, ScriptedReply};
use loadtest::fakes::ledger::InMemoryLedger;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
use securityhub_enricher::core::cache_entry::CacheEntry;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::FindingId;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::service::batch_report::BatchReport;
use securityhub_enricher::service::directory::Directory;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::quota_share::QuotaShare;
use serde_json::{Value, json};
use tokio::time::Instant;

const A: &str = "111122223333";
const B: &str = "444455556666";
const C: &str = "777788889999";
const GUARDDUTY: &str = "arn:aws:securityhub:us-east-1::product/aws/guardduty";

fn id(name: &str, account: &str) -> FindingId {
    FindingId {
        id: format!("arn:aws:guardduty:us-east-1:{account}:detector/d/finding/{name}"),
        product_arn: GUARDDUTY.into(),
    }
}

fn account(id: &str, name: &str) -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: id.into(),
        name: Some(name.into()),
        ou_path: vec![
            OrgUnit { id: "r-ab12".into(), name: "Root".into() },
            OrgUnit { id: "ou-ab12-11111111".into(), name: "Prod".into() },
        ],
        tags: BTreeMap::from([("Owner".into(), "payments".into())]),
        security_contact: ContactLookup::Found(Contact {
            name: "Sec".into(),
            title: "Lead".into(),
            email: "sec@example.com".into(),
            phone: "+1 555 0100".into(),
        }),
    })
}

struct Harness {
    hub: Arc<InMemoryHub>,
    store: Arc<InMemoryStore>,
    source: Arc<StaticSource>,
    enricher: Enricher,
}

fn harness_with(source: StaticSource, hub: InMemoryHub, store: Arc<InMemoryStore>) -> Harness {
    harness_configured(source, hub, store, |builder| builder)
}

/// The harness, with `configure` applied to the builder last.
fn harness_configured(
    source: StaticSource,
    hub: InMemoryHub,
    store: Arc<InMemoryStore>,
    configure: impl FnOnce(EnricherBuilder) -> EnricherBuilder,
) -> Harness {
    let hub = Arc::new(hub);
    let source = Arc::new(source);
    let builder = EnricherBuilder::new()
        .store(store.clone())
        .source(source.clone())
        .cache_times(test_cache_times())
        .hub(hub.clone())
        .backoff(Duration::from_millis(1), 6);
    let enricher = configure(builder).build();
    Harness { hub, store, source, enricher }
}

fn harness() -> Harness {
    let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
    harness_with(source, InMemoryHub::default(), Arc::default())
}

fn fixture(name: &str) -> IncomingBatch {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn failures(report: &BatchReport) -> Vec<String> {
    report.response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

fn assert_fixture_outcomes(report: &BatchReport) {
    let t = &report.tally;
    assert!(t.balances(), "{t}");
    assert_eq!(
        (t.records_in, t.records_processed, t.records_skipped, t.records_poison, t.records_failed),
        (12, 8, 2, 2, 0),
        "{t}"
    );
    assert_eq!((t.findings_in, t.findings_enriched), (10, 5), "{t}");
    let skipped: BTreeMap<&str, usize> = t.findings_skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        skipped,
        BTreeMap::from([
            ("already_enriched", 1),
            ("archived", 1),
            ("invalid_account_id", 1),
            ("malformed_finding", 1),
            ("superseded", 1)
        ])
    );
    // Account A (a1, a2), A with a foreign field and note (a4), B, C: four payloads, four calls.
    assert_eq!(report.writes.minimum_calls, 4);
    assert_eq!(report.writes.updates.calls, 4);
    assert!(failures(report).is_empty());
}

#[tokio::test(start_paused = true)]
async fn pipe_batch_ends_every_record_and_finding_in_one_outcome() {
    let h = harness();
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_fixture_outcomes(&report);

    let a1 = h.hub.payload(&id("a1", A)).expect("a1 enriched");
    assert_eq!(a1.fields["findingEnriched"], "True");
    assert_eq!(a1.fields["AccountName"], "payments-prod");
    assert_eq!(a1.fields["OUPath"], "Root/Prod");
    assert_eq!(a1.fields["Owner"], "payments");
    assert!(a1.note.as_deref().unwrap().starts_with("Account payments-prod (111122223333) in Root/Prod."));
    assert_eq!(h.hub.payload(&id("a2", A)), Some(a1.clone()), "one payload per account");
    assert_eq!(h.hub.payload(&id("b1", B)).unwrap().fields["AccountName"], "data-lake");

    let a4 = h.hub.payload(&id("a4", A)).unwrap();
    assert_eq!(a4.fields["ticket"], "SEC-1", "someone else's field is carried along");
    assert_eq!(a4.note, None, "someone else's note is left alone");

    // Outside the organization: named from the finding itself, and complete (nothing more to learn).
    let c1 = h.hub.payload(&id("c1", C)).unwrap();
    assert_eq!(c1.fields["AccountName"], "partner-account");
    assert_eq!(c1.fields["findingEnriched"], "True");
    assert_eq!(h.hub.payload(&id("a3", A)), None);
    assert_eq!(h.hub.payload(&id("b2", B)), None);
}

#[tokio::test(start_paused = true)]
async fn event_source_mapping_batch_has_the_same_outcomes() {
    let h = harness();
    let report = h.enricher.handle(fixture("esm_batch.json"), soon()).await;
    assert_fixture_outcomes(&report);
}

#[tokio::test(start_paused = true)]
async fn failed_records_are_reported_by_the_identifier_their_shape_requires() {
    for (file, expected) in [
        ("pipe_batch.json", "shardId-000000000006:49590000000000000000000000000000000000000000000000000000"),
        ("esm_batch.json", "49590000000000000000000000000000000000000000000000000000"),
    ] {
        let h = harness();
        // a1 is record 0's only finding: make its update fail for good on transient errors.
        h.hub.script(
            (0..20).map(|_| ScriptedReply::Unprocessed { code: "InternalFailure".into(), ids: vec![id("a1", A)] }),
        );
        let report = h.enricher.handle(fixture(file), soon()).await;
        assert!(report.tally.balances(), "{}", report.tally);
        // Record 0 carries a1; the superseded older copy (record 2) is not failed with it.
        assert_eq!(failures(&report), vec![expected.to_owned()], "{file}");
        assert_eq!(report.tally.findings_failed.get("transient"), Some(&1));
    }
}

#[tokio::test(start_paused = true)]
async fn throttling_and_concurrent_updates_are_absorbed_by_retries() {
    let h = harness();
    h.hub.script([
        ScriptedReply::Throttle,
        ScriptedReply::Throttle,
        ScriptedReply::Transient,
        ScriptedReply::Unprocessed { code: "ConcurrentUpdateError".into(), ids: vec![] },
    ]);
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(failures(&report).is_empty());
    assert_eq!(report.tally.findings_enriched, 5);
    assert_eq!(report.writes.updates.throttled, 2);
    assert_eq!(report.writes.updates.findings_per_call.len(), 4 + 1, "one call's findings were sent twice");
}

#[tokio::test(start_paused = true)]
async fn permanent_rejections_are_skipped_not_retried() {
    let hub = InMemoryHub::default();
    hub.register([id("a1", A), id("a2", A), id("b1", B), id("c1", C)]);
    let h =
        harness_with(StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]), hub, Arc::default());
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(failures(&report).is_empty());
    assert_eq!(report.tally.findings_skipped.get("FindingNotFound"), Some(&1), "a4 was never imported");
    assert!(report.tally.balances());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_close_fails_the_records_instead_of_timing_out() {
    let h = harness();
    let report = h.enricher.handle(fixture("pipe_batch.json"), Instant::now() + Duration::from_millis(20)).await;
    assert!(report.tally.balances(), "{}", report.tally);
    assert_eq!(report.tally.findings_failed.get("deadline"), Some(&5));
    // Records with a finding to update: r1 (a1), r2 (a2, b1), r9 (c1), r11 (a4).
    assert_eq!(failures(&report).len(), 4);
    assert_eq!(h.hub.call_count(), 0);
}

/// Without a refresh queue to defer to (here: none; deployed: one that refuses the account),
/// findings of accounts not known in time are written `Partial`.
#[tokio::test(start_paused = true)]
async fn organizations_outage_gives_partial_enrichment_that_completes_later() {
    let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
    source.fail(&[A, B]);
    let h = harness_with(source, InMemoryHub::default(), Arc::default());
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(failures(&report).is_empty(), "an outage must not block the shard");
    assert_eq!(report.tally.findings_enriched_partial, 4);
    let a1 = h.hub.payload(&id("a1", A)).unwrap();
    assert_eq!(a1.fields["findingEnriched"], "Partial");
    assert_eq!(a1.fields["AccountName"], "payments-prod", "named from the finding's AwsAccountName");
    assert!(!a1.fields.contains_key("OU"));
    assert_eq!(h.store.len(), 1, "failures are not cached; C's absence from the organization is");

    // The Partial update comes back through the stream; with Organizations still down it
    // would write the same thing again, so it is not sent (no loop).
    let mut replay: serde_json::Value = serde_json::json!([{
        "eventID": "s:1", "sequenceNumber": "1", "partitionKey": A, "approximateArrivalTimestamp": 1.0,
        "data": encode_event(&finding_with(a1.clone(), "a1")),
    }]);
    let report = h.enricher.handle(serde_json::from_value(replay.take()).unwrap(), soon()).await;
    assert_eq!(report.tally.findings_skipped.get("still_partial"), Some(&1));
    assert_eq!(report.writes.updates.calls, 0);

    // Organizations is back: the next event for the finding completes it.
    h.source.fail(&[]);
    let report = h
        .enricher
        .handle(
            serde_json::from_value(serde_json::json!([{
                "eventID": "s:2", "sequenceNumber": "2", "partitionKey": A,
                "data": encode_event(&finding_with(a1, "a1")),
            }]))
            .unwrap(),
            soon(),
        )
        .await;
    assert_eq!(report.tally.findings_enriched, 1);
    assert_eq!(report.tally.findings_enriched_partial, 0);
    assert_eq!(h.hub.payload(&id("a1", A)).unwrap().fields["findingEnriched"], "True");
}

fn finding_with(payload: securityhub_enricher::core::enrich::EnrichmentPayload, name: &str) -> serde_json::Value {
    let fid = id(name, A);
    serde_json::json!({
        "Id": fid.id, "ProductArn": fid.product_arn, "AwsAccountId": A, "AwsAccountName": "payments-prod",
        "UpdatedAt": "2026-11-22T07:00:00Z", "UserDefinedFields": payload.fields,
        "Note": payload.note.map(|text| serde_json::json!({"Text": text, "UpdatedBy": "securityhub-enricher"})),
    })
}

fn encode_event(finding: &serde_json::Value) -> String {
    use base64::Engine as _;
    let event = serde_json::json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported", "detail": {"findings": [finding]}});
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&event).unwrap())
}

#[tokio::test(start_paused = true)]
async fn stale_cache_is_served_when_a_refresh_fails() {
    let store = Arc::new(InMemoryStore::default());
    let now = now_epoch_seconds();
    store.insert(
        A,
        CacheEntry {
            record: account(A, "cached-name"),
            fetched_at: now - 7200,
            fresh_until: now - 10,
            expires_at: now + 3600,
        },
    );
    let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
    source.fail(&[A]);
    let h = harness_with(source, InMemoryHub::default(), store);
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_eq!(report.prefetch.stale_served, 1);
    let a1 = h.hub.payload(&id("a1", A)).unwrap();
    assert_eq!(a1.fields["AccountName"], "cached-name");
    assert_eq!(a1.fields["findingEnriched"], "True");
}

#[tokio::test(start_paused = true)]
async fn expired_cache_entries_are_misses_even_if_still_stored() {
    let store = Arc::new(InMemoryStore::default());
    let now = now_epoch_seconds();
    store.insert(
        A,
        CacheEntry {
            record: account(A, "too-old"),
            fetched_at: now - 9000,
            fresh_until: now - 7200,
            expires_at: now - 1,
        },
    );
    let h = harness_with(StaticSource::new([account(A, "payments-prod")]), InMemoryHub::default(), store);
    h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_eq!(h.source.lookups(A), 1);
    assert_eq!(h.hub.payload(&id("a1", A)).unwrap().fields["AccountName"], "payments-prod");
}

#[tokio::test(start_paused = true)]
async fn unavailable_cache_table_still_enriches() {
    let store = Arc::new(InMemoryStore::default());
    store.unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
    let h = harness_with(
        StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]),
        InMemoryHub::default(),
        store,
    );
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_fixture_outcomes(&report);
    assert_eq!(report.prefetch.store_errors, 1, "the failed read; the lookup task logs its failed write");
    assert!(h.store.put_calls.load(std::sync::atomic::Ordering::Relaxed) >= 1, "the write was still attempted");
}

#[tokio::test(start_paused = true)]
async fn warm_batches_skip_lookups_and_the_table_serves_a_new_environment() {
    let h = harness();
    h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_eq!(h.source.total_lookups(), 3, "A, B and C once each");
    let second = h.enricher.handle(fixture("esm_batch.json"), soon()).await;
    assert_eq!(second.prefetch.memory_hits, 3);
    assert_eq!(h.source.total_lookups(), 3);

    // A new environment (empty memory) warms from the table: one BatchGetItem, no lookups.
    let fresh = harness_with(StaticSource::default(), InMemoryHub::default(), h.store.clone());
    let gets_before = h.store.get_calls.load(std::sync::atomic::Ordering::Relaxed);
    let report = fresh.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert_eq!(report.prefetch.store_hits, 3);
    assert_eq!(fresh.source.total_lookups(), 0);
    assert_eq!(h.store.get_calls.load(std::sync::atomic::Ordering::Relaxed) - gets_before, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_for_one_account_collapse_into_one_lookup() {
    let source = Arc::new(StaticSource::new([account(A, "payments-prod")]).with_latency(Duration::from_millis(100)));
    let directory = Directory::new(
        Arc::new(InMemoryStore::default()),
        source.clone(),
        test_cache_times(),
        8,
        Duration::from_secs(5),
    );
    let ids = vec![A.to_owned()];
    let (a, b, c) = tokio::join!(
        directory.prefetch(&ids, soon()),
        directory.prefetch(&ids, soon()),
        directory.prefetch(&ids, soon())
    );
    assert_eq!(source.lookups(A), 1);
    for (resolved, _) in [a, b, c] {
        assert!(resolved[A].record().is_some());
    }
}

/// Without a refresh queue: see `findings_of_accounts_not_known_in_time_are_deferred_...` for the deployed way.
#[tokio::test(start_paused = true)]
async fn lookups_out_of_budget_degrade_to_partial() {
    let source =
        StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]).with_latency(Duration::from_secs(10));
    let hub = Arc::new(InMemoryHub::default());
    let enricher = EnricherBuilder::new()
        .source(Arc::new(source))
        .cache_times(test_cache_times())
        .lookups(8, Duration::from_millis(50))
        .hub(hub.clone())
        .rate(Rate { per_second: 100.0, burst: 100 })
        .deadline_margin(Duration::from_millis(10))
        .build();
    let started = Instant::now();
    let report = enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the lookup budget bounds the wait");
    assert_eq!(report.prefetch.lookups_out_of_budget, 3);
    assert_eq!(report.tally.findings_enriched_partial, 5);
    assert!(failures(&report).is_empty());
}

#[tokio::test(start_paused = true)]
async fn empty_batch_succeeds_with_an_empty_response() {
    let h = harness();
    let report = h.enricher.handle(serde_json::from_str("[]").unwrap(), soon()).await;
    assert_eq!(serde_json::to_string(&report.response).unwrap(), r#"{"batchItemFailures":[]}"#);
    let report = h.enricher.handle(serde_json::from_str(r#"{"Records":[]}"#).unwrap(), soon()).await;
    assert!(report.tally.balances());
    assert_eq!(h.hub.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn findings_of_one_account_share_requests_of_up_to_100() {
    let h = harness();
    let records: Vec<serde_json::Value> = (0..250)
        .map(|i| {
            let fid = id(&format!("bulk{i}"), A);
            let finding = serde_json::json!({"Id": fid.id, "ProductArn": fid.product_arn, "AwsAccountId": A});
            serde_json::json!({"eventID": format!("s:{i}"), "data": encode_event(&finding)})
        })
        .collect();
    let report = h.enricher.handle(serde_json::from_value(serde_json::Value::Array(records)).unwrap(), soon()).await;
    assert_eq!(report.tally.findings_enriched, 250);
    assert_eq!(report.writes.updates.findings_per_call.len(), 3);
    let mut sizes = report.writes.updates.findings_per_call.clone();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![50, 100, 100]);
}

#[test]
fn fixture_batches_match_their_readable_source() {
    use base64::Engine as _;
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/events.json")).unwrap()).unwrap();
    let pipe: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/pipe_batch.json")).unwrap()).unwrap();
    assert_eq!(events.len(), pipe.len());
    for (source, record) in events.iter().zip(&pipe) {
        if let Some(event) = source.get("event") {
            let data = base64::engine::general_purpose::STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            let decoded: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(&decoded, event, "regenerate with: python3 tests/fixtures/make_batches.py");
        }
    }
}

/// Two environments writing at once share the quota through one ledger: each sees the other's
/// claim while both write, and the ledger is empty once both are done.
#[tokio::test(start_paused = true)]
async fn environments_writing_at_once_share_the_quota_through_the_ledger() {
    let ledger = Arc::new(InMemoryLedger::default());
    let pool = Rate { per_second: 1000.0, burst: 1000 };
    let environment = |holder: &str| {
        let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
        let quota = QuotaShare::shared(pool, pool, ledger.clone(), holder, Duration::from_millis(10));
        let hub = InMemoryHub::default().with_latency(Duration::from_millis(40));
        harness_configured(source, hub, Arc::default(), |builder| builder.quota(quota))
    };
    let (one, two) = (environment("one"), environment("two"));
    let (a, b) = tokio::join!(
        one.enricher.handle(fixture("pipe_batch.json"), soon()),
        two.enricher.handle(fixture("pipe_batch.json"), soon()),
    );
    assert_fixture_outcomes(&a);
    assert_fixture_outcomes(&b);
    let holders = [a.writes.updates.quota_holders, b.writes.updates.quota_holders];
    assert!(holders.contains(&Some(2)), "each saw only itself: {holders:?}");
    assert_eq!(ledger.live(), 0, "both released their claims");
}

/// The analyst's custom action on an Inspector finding arrives beside the finding's Imported
/// event and its redelivery; two GuardDuty findings of one user arrive hours apart.
#[tokio::test(start_paused = true)]
async fn an_explicit_request_survives_its_duplicates_and_one_actor_gets_one_job() {
    use base64::Engine as _;
    use loadtest::fakes::jobs::InMemoryJobs;
    use securityhub_enricher::core::select::Criteria;
    use securityhub_enricher::service::fanout::Fanout;
    use serde_json::{Value, json};

    let jobs = Arc::new(InMemoryJobs::default());
    let fanout = Fanout { jobs: jobs.clone(), criteria: Criteria::default(), lookback_hours: 24 };
    let source = StaticSource::new([account(A, "payments-prod")]);
    let h = harness_configured(source, InMemoryHub::default(), Arc::default(), |b| b.fanout(fanout));
    let role = format!("arn:aws:iam::{A}:role/ci-deployer");
    let alice = format!("arn:aws:iam::{A}:user/alice");
    let inspector = json!({
        "Id": "inspector-1", "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/inspector",
        "AwsAccountId": A, "UpdatedAt": "2026-11-22T07:00:00Z", "FirstObservedAt": "2026-11-22T06:00:00Z",
        "Severity": {"Label": "LOW"}, "Resources": [{"Type": "AwsIamRole", "Id": role}]});
    let guardduty = |name: &str, first: &str| {
        json!({"Id": id(name, A).id, "ProductArn": GUARDDUTY, "AwsAccountId": A, "UpdatedAt": first,
               "FirstObservedAt": first, "Severity": {"Label": "HIGH"},
               "Resources": [{"Type": "AwsIamUser", "Id": alice}]})
    };
    let imported = |f: &Value| json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported", "detail": {"findings": [f]}});
    let action = json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Custom Action",
                        "detail": {"actionName": "investigate", "findings": [inspector]}});
    let events = [
        imported(&inspector),
        action,
        imported(&inspector),
        imported(&guardduty("g1", "2026-11-22T01:10:00Z")),
        imported(&guardduty("g2", "2026-11-22T09:40:00Z")),
    ];
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let data = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(e).unwrap());
            json!({"eventID": format!("s:{n}"), "data": data})
        })
        .collect();
    let batch: IncomingBatch = serde_json::from_value(Value::Array(records)).unwrap();
    let report = h.enricher.handle(batch, soon()).await;
    assert!(report.tally.balances(), "{}", report.tally);
    let stats = &report.investigations;
    assert_eq!((stats.findings_selected, stats.explicit_requests, stats.findings_joined), (3, 1, 1), "{stats:?}");
    assert_eq!(stats.jobs_created, 2);
    let queued: BTreeMap<String, (Vec<String>, u8)> = jobs
        .jobs()
        .into_values()
        .map(|j| (j.entity_arn, (j.findings.into_iter().map(|f| f.id).collect(), j.priority)))
        .collect();
    assert_eq!(queued[&role], (vec!["inspector-1".to_owned()], 11), "the request, ahead of any severity");
    assert_eq!(queued[&alice], (vec![id("g1", A).id, id("g2", A).id], 3));
}

#[tokio::test(start_paused = true)]
async fn accounts_a_batch_cannot_resolve_are_queued_for_the_refresher() {
    let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
    source.fail(&[A]);
    let queue = Arc::new(loadtest::fakes::sweep_state::InMemorySweepState::default());
    let enricher = EnricherBuilder::new()
        .source(Arc::new(source))
        .refresh_queue(queue.clone())
        .backoff(Duration::from_millis(1), 3)
        .build();
    let report = enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(report.tally.balances());
    assert_eq!(report.queued_for_refresh, 1);
    use securityhub_enricher::ports::sweep_state::SweepState as _;
    assert_eq!(queue.queued().await.unwrap(), vec![A.to_owned()], "only the account left Partial");
}

/// Deployed, the stream defers what it cannot resolve: the findings of an account Organizations
/// cannot answer for are not written `Partial`; the account is queued and the findings are
/// counted `deferred` (their records acknowledged), while the other accounts' are written.
#[tokio::test(start_paused = true)]
async fn findings_of_accounts_not_known_in_time_are_deferred_to_the_refresher_not_written_partial() {
    let source = StaticSource::new([account(A, "payments-prod"), account(B, "data-lake")]);
    source.fail(&[A]);
    let queue = Arc::new(loadtest::fakes::sweep_state::InMemorySweepState::default());
    let h = harness_configured(source, InMemoryHub::default(), Arc::default(), |b| b.refresh_queue(queue.clone()));
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(report.tally.balances(), "{}", report.tally);
    assert!(failures(&report).is_empty(), "a deferred finding's record is acknowledged");
    assert_eq!(report.tally.findings_deferred, 3, "a1, a2 and a4: {}", report.tally);
    assert_eq!(report.tally.findings_enriched_partial, 0);
    assert!(h.hub.payload(&id("a1", A)).is_none(), "nothing written for A");
    assert_eq!(h.hub.payload(&id("b1", B)).unwrap().fields["findingEnriched"], "True");
    use securityhub_enricher::ports::sweep_state::SweepState as _;
    assert_eq!(queue.queued().await.unwrap(), vec![A.to_owned()]);

    // When the queue cannot take the account, its findings are written Partial after all:
    // nothing waits on a queue that does not hold it.
    queue.refuse_enqueue.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = h.enricher.handle(fixture("pipe_batch.json"), soon()).await;
    assert!(report.tally.balances(), "{}", report.tally);
    assert_eq!((report.tally.findings_deferred, report.queued_for_refresh), (0, 0));
    assert_eq!(report.tally.findings_enriched_partial, 3, "{}", report.tally);
    assert_eq!(h.hub.payload(&id("a1", A)).unwrap().fields["findingEnriched"], "Partial");
}

/// A cold start: a batch of more unknown accounts than a few sweeps' worth looks none of them up
/// (each lookup would cost about 4 Organizations calls, against about 2 for the refresher's walk,
/// on the same budget); it queues them all and defers their findings, and still writes the
/// findings of accounts it knows.
#[tokio::test(start_paused = true)]
async fn a_cold_batch_leaves_its_unknown_accounts_to_the_refresher_without_looking_them_up() {
    use loadtest::loadgen::{Generator, imported_event, synthetic_org};
    use securityhub_enricher::ports::sweep_state::SweepState as _;
    use securityhub_enricher::service::refresh::QUEUE_SWEEP_LIMIT;
    let org = synthetic_org(400, 3);
    let store: Arc<InMemoryStore> = Arc::default();
    // One account already known.
    let known = org[0].clone();
    let AccountRecord::Found(meta) = &known else { panic!("the synthetic organization's accounts are found") };
    let known_id = meta.account_id.clone();
    store.insert(&known_id, CacheEntry::new(known.clone(), now_epoch_seconds(), &test_cache_times(), &mut rand::rng()));
    let queue = Arc::new(loadtest::fakes::sweep_state::InMemorySweepState::default());
    let h =
        harness_configured(StaticSource::new(org), InMemoryHub::default(), store, |b| b.refresh_queue(queue.clone()));

    let mut generator = Generator::new(400, 3).minimal();
    let mut events: Vec<Value> = (0..600).map(|n| imported_event(&[generator.finding().1], n)).collect();
    let mut known_finding = generator.finding().1;
    known_finding["AwsAccountId"] = json!(known_id);
    events.push(imported_event(&[known_finding], 600));
    let report = h.enricher.handle(loadtest::batches::incoming_batch_of_events(&events), soon()).await;

    assert!(report.tally.balances(), "{}", report.tally);
    assert!(failures(&report).is_empty());
    assert_eq!(h.source.total_lookups(), 0, "no account looked up");
    let unknown = report.prefetch.accounts - report.prefetch.store_hits - report.prefetch.memory_hits;
    assert!(unknown > QUEUE_SWEEP_LIMIT, "{unknown} accounts unknown");
    assert_eq!(report.queued_for_refresh, unknown);
    assert_eq!(queue.queued().await.unwrap().len(), unknown);
    let known_findings = report.tally.findings_enriched;
    assert!(known_findings >= 1, "the known account's findings are written: {}", report.tally);
    assert_eq!(report.tally.findings_deferred + known_findings, report.tally.findings_in, "{}", report.tally);
    assert_eq!(report.tally.findings_enriched_partial, 0);
}
