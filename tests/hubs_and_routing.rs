//! Both hubs in one batch on in-memory fakes (paused clock): OCSF findings decoded, deduped and
//! written with BatchUpdateFindingsV2 comments grouped per account; foreign comments left alone;
//! routing from ROUTING_POLICY into UserDefinedFields, comments and enriched-finding events;
//! PutEvents batched by 10, failed entries retried, and a lost publish failing its record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::bus::{BusReply, InMemoryBus};
use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::InMemoryHub;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::FindingId;
use securityhub_enricher::core::finding::OcsfFindingId;
use securityhub_enricher::core::routing::{RoutingPolicy, RoutingRules};
use securityhub_enricher::service::handler::Enricher;
use serde_json::{Value, json};
use tokio::time::Instant;

const A: &str = "111122223333";
const B: &str = "444455556666";
const GUARDDUTY: &str = "arn:aws:securityhub:us-east-1::product/aws/guardduty";
const POLICY: &str = r#"{"rules":[
    {"ou_path_prefix":"Root/Workloads/Prod","account_tags":{"team":"payments"},"set":{"owner":"payments","criticality":"high"}},
    {"ou_path_prefix":"Root/Workloads","set":{"environment":"prod"}}]}"#;

fn account(id: &str, name: &str, team: &str) -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: id.into(),
        name: Some(name.into()),
        ou_path: ["Root", "Workloads", "Prod"]
            .iter()
            .enumerate()
            .map(|(i, n)| OrgUnit { id: format!("ou-{i}"), name: (*n).into() })
            .collect(),
        tags: BTreeMap::from([("team".into(), team.into()), ("owner".into(), format!("{team}-tag"))]),
        security_contact: ContactLookup::Found(Contact {
            name: "Jane Secret".into(),
            title: "CISO".into(),
            email: "jane@example.com".into(),
            phone: "+1 555 0100".into(),
        }),
    })
}

fn ocsf(uid: &str, account: &str, modified_ms: i64, comment: Option<&str>) -> Value {
    let mut f = json!({
        "metadata": {"uid": uid, "product": {"uid": "arn:aws:securityhub:us-east-1::productv2/aws/guardduty", "name": "GuardDuty"}},
        "cloud": {"account": {"uid": account}},
        "finding_info": {"uid": format!("gd-{uid}"), "title": "Recon", "modified_time": modified_ms},
        "severity": "High", "severity_id": 4
    });
    if let Some(c) = comment {
        f["comment"] = json!(c);
    }
    f
}

fn v2_event(finding: Value) -> Value {
    json!({"source": "aws.securityhub", "detail-type": "Findings Imported V2", "detail": {"findings": [finding]}})
}

fn v1_event(id: &str, account: &str) -> Value {
    json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported", "detail": {"findings": [
        {"Id": id, "ProductArn": GUARDDUTY, "AwsAccountId": account, "UpdatedAt": "2026-11-22T07:00:00Z", "Title": "t"}]}})
}

fn batch(events: &[Value]) -> IncomingBatch {
    use base64::Engine as _;
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"eventID": format!("shardId-0:{i}"), "partitionKey": A,
                   "data": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(e).unwrap())})
        })
        .collect();
    serde_json::from_value(Value::Array(records)).unwrap()
}

fn enricher(hub: &Arc<InMemoryHub>, bus: &Arc<InMemoryBus>) -> Enricher {
    EnricherBuilder::new()
        .source(Arc::new(StaticSource::new([account(A, "payments-prod", "payments"), account(B, "data", "data")])))
        .hub(hub.clone())
        .hub_v2(hub.clone())
        .events(bus.clone())
        .routing(RoutingRules { policy: RoutingPolicy::parse(POLICY).unwrap(), owner_tag_key: "owner".into() })
        .backoff(Duration::from_millis(1), 5)
        .build()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test(start_paused = true)]
async fn both_hubs_in_one_batch_are_enriched_routed_and_published() {
    let hub = Arc::new(InMemoryHub::default());
    let bus = Arc::new(InMemoryBus::default());
    let e = enricher(&hub, &bus);
    let events = vec![
        v1_event("f1", A),
        v2_event(ocsf("m1", A, 1_000, None)),
        v2_event(ocsf("m1", A, 2_000, None)), // the same finding, modified later: wins
        v2_event(ocsf("m2", A, 1_000, None)),
        v2_event(ocsf("m3", B, 1_000, None)),
        v2_event(ocsf("m4", A, 1_000, Some("triaged by alice: benign"))),
        v2_event(json!({"metadata": {"product": {"uid": "p"}}})), // no identifier: a counted skip
        v2_event(ocsf("m5", A, 1_000, Some("[securityhub-enricher] Account payments-prod (111122223333)."))),
    ];
    let report = e.handle(batch(&events), soon()).await;
    let t = &report.tally;
    assert!(t.balances(), "{t}");
    assert_eq!((t.records_in, t.records_processed, t.records_failed), (8, 8, 0), "{t}");
    assert_eq!((t.findings_in, t.findings_enriched), (8, 4), "{t}");
    let skipped: BTreeMap<&str, usize> = t.findings_skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        skipped,
        BTreeMap::from([("already_enriched", 1), ("foreign_comment", 1), ("malformed_finding", 1), ("superseded", 1)])
    );

    // V2: one comment per account, so two calls for three findings; the analyst's comment is untouched.
    assert_eq!((report.writes.updates_v2.calls, report.writes.minimum_calls_v2), (2, 2));
    let comments = hub.comments.lock().unwrap().clone();
    let m1 = &comments[&OcsfFindingId::MetadataUid("m1".into())];
    assert_eq!(
        m1,
        "[securityhub-enricher] Account payments-prod (111122223333) in Root/Workloads/Prod. Owner: payments. \
         Environment: prod. Criticality: high. Security contact: CISO."
    );
    assert_eq!(&comments[&OcsfFindingId::MetadataUid("m2".into())], m1);
    assert!(comments[&OcsfFindingId::MetadataUid("m3".into())].contains("Owner: data-tag."), "owner tag fallback");
    assert!(!comments.contains_key(&OcsfFindingId::MetadataUid("m4".into())));
    assert!(!comments.values().any(|c| c.contains("jane@") || c.contains("Jane Secret") || c.contains("+1 555")));

    // V1 gets the routing as UserDefinedFields.
    let f1 = hub.payload(&FindingId { id: "f1".into(), product_arn: GUARDDUTY.into() }).unwrap();
    assert_eq!(f1.fields["owner"], "payments");
    assert_eq!(f1.fields["environment"], "prod");
    assert_eq!(f1.fields["criticality"], "high");

    // One event per enriched finding, one PutEvents call for four.
    assert_eq!((report.writes.events.calls, report.writes.events.published), (1, 4));
    let details = bus.details();
    assert_eq!(details.len(), 4);
    let by_hub = |hub: &str| details.iter().filter(|d| d["finding"]["hub"] == hub).count();
    assert_eq!((by_hub("cspm"), by_hub("v2")), (1, 3));
    let m3 = details.iter().find(|d| d["finding"]["id"] == "m3").unwrap();
    assert_eq!(m3["schema_version"], "1");
    assert_eq!(m3["account"]["id"], B);
    assert_eq!(m3["account"]["ou_path"], "Root/Workloads/Prod");
    assert_eq!(m3["account"]["has_security_contact"], true);
    assert_eq!(m3["routing"], json!({"owner": "data-tag", "environment": "prod"}));
    assert_eq!(m3["finding"]["finding_info_uid"], "gd-m3");
    assert_eq!(m3["finding"]["severity"], "HIGH");
    assert!(!bus.accepted.lock().unwrap().iter().any(|e| e.detail.contains("jane")));

    // The same batch again: our V2 comments would be rewritten identically, so nothing is sent.
    let replay: Vec<Value> = [("m1", A), ("m3", B)]
        .iter()
        .map(|(uid, acct)| {
            v2_event(ocsf(uid, acct, 3_000, Some(&comments[&OcsfFindingId::MetadataUid((*uid).into())])))
        })
        .collect();
    let again = e.handle(batch(&replay), soon()).await;
    assert_eq!(again.tally.findings_skipped.get("already_enriched"), Some(&2), "the marker is the loop guard");
    assert_eq!(again.writes.updates_v2.calls, 0);
}

#[tokio::test(start_paused = true)]
async fn put_events_takes_ten_entries_a_call_retries_failed_entries_and_a_lost_event_fails_its_record() {
    let hub = Arc::new(InMemoryHub::default());
    let bus = Arc::new(InMemoryBus::default());
    let e = enricher(&hub, &bus);
    let events: Vec<Value> = (0..25).map(|i| v2_event(ocsf(&format!("m{i}"), A, 1, None))).collect();
    bus.script([BusReply::FailEntries { indices: vec![0, 9], code: "ThrottlingException".into() }, BusReply::Throttle]);
    let report = e.handle(batch(&events), soon()).await;
    assert!(report.tally.balances());
    assert_eq!(report.tally.findings_enriched, 25);
    assert_eq!(bus.accepted.lock().unwrap().len(), 25, "every event lands once");
    assert!(bus.calls.lock().unwrap().iter().all(|&n| n <= 10));
    assert_eq!(report.writes.events.published, 25);
    assert!(report.writes.events.calls >= 4, "3 calls for 25 entries plus the retries: {:?}", report.writes.events);
    assert_eq!(report.writes.updates_v2.calls, 1, "25 findings of one account: one BatchUpdateFindingsV2");

    // A bus that does not exist: the findings' records are retried, nothing is lost.
    let missing = Arc::new(InMemoryBus::default());
    missing.script([BusReply::Reject]);
    let e = enricher(&hub, &missing);
    let report = e.handle(batch(&[v2_event(ocsf("z1", B, 1, None))]), soon()).await;
    assert!(report.tally.balances());
    assert_eq!(report.tally.records_failed, 1);
    assert_eq!(report.response.batch_item_failures.len(), 1);
    assert_eq!(report.writes.events.failed, 1);
}

/// The new hub's findings follow the Partial decision too: an OCSF finding whose account is not
/// known in time is deferred (no BatchUpdateFindingsV2 comment), its account queued for the
/// refresher, while the known account's finding is written.
#[tokio::test(start_paused = true)]
async fn ocsf_findings_of_an_account_not_known_in_time_are_deferred_to_the_refresher() {
    use securityhub_enricher::ports::sweep_state::SweepState as _;
    let hub = Arc::new(InMemoryHub::default());
    let source = StaticSource::new([account(A, "payments-prod", "payments"), account(B, "data", "data")]);
    source.fail(&[A]);
    let queue = Arc::new(loadtest::fakes::sweep_state::InMemorySweepState::default());
    let enricher = EnricherBuilder::new()
        .source(Arc::new(source))
        .hub(hub.clone())
        .hub_v2(hub.clone())
        .refresh_queue(queue.clone())
        .build();
    let report = enricher
        .handle(
            batch(&[
                v2_event(ocsf("m1", A, 1_000, None)),
                v2_event(ocsf("m2", A, 1_000, None)),
                v2_event(ocsf("m3", B, 1_000, None)),
            ]),
            soon(),
        )
        .await;
    assert!(report.tally.balances(), "{}", report.tally);
    assert!(report.response.batch_item_failures.is_empty(), "a deferred finding's record is acknowledged");
    assert_eq!((report.tally.findings_deferred, report.tally.findings_enriched), (2, 1), "{}", report.tally);
    let comments = hub.comments.lock().unwrap().clone();
    assert!(!comments.contains_key(&OcsfFindingId::MetadataUid("m1".into())), "nothing written for A");
    assert!(comments[&OcsfFindingId::MetadataUid("m3".into())].contains("(444455556666)"));
    assert_eq!(queue.queued().await.unwrap(), vec![A.to_owned()]);
}
