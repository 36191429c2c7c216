//! Every path serves a finding the same way (in-memory fakes, paused clock): under one
//! configuration (`TAG_KEYS`, `ROUTING_POLICY`, `OWNER_TAG_KEY`, `ENRICHED_EVENTS_BUS`) a
//! finding the stream wrote is current for the sweep and one the sweep wrote is current for the
//! stream, on both hubs; the sweep keeps the policy's routing, backfills the new hub and
//! publishes what it writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::bus::InMemoryBus;
use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::InMemoryHub;
use proptest::prelude::*;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, ContactLookup, OrgUnit};
use securityhub_enricher::core::enrich::{TagFilter, keys};
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::{Finding, OcsfFindingId};
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::core::routing::{RoutingPolicy, RoutingRules};
use securityhub_enricher::service::sweep::{SweepReport, Sweeper};
use serde_json::{Value, json};
use tokio::time::Instant;

const GUARDDUTY: &str = "arn:aws:securityhub:us-east-1::product/aws/guardduty";
const GUARDDUTY_V2: &str = "arn:aws:securityhub:us-east-1::productv2/aws/guardduty";
const READS: Rate = Rate { per_second: 2.0, burst: 4 };
const POLICY: &str = r#"{"rules":[
    {"ou_path_prefix":"Root/Workloads","account_tags":{"team":"payments"},"set":{"owner":"payments","criticality":"high"}},
    {"ou_path_prefix":"Root/Workloads","set":{"environment":"prod"}}]}"#;

fn account_id(n: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + n as u64)
}

fn account(n: usize, team: &str, under_workloads: bool) -> AccountRecord {
    let mut ou_path = vec![OrgUnit { id: "r-1".into(), name: "Root".into() }];
    if under_workloads {
        ou_path.push(OrgUnit { id: "ou-1".into(), name: "Workloads".into() });
    }
    AccountRecord::Found(AccountMetadata {
        account_id: account_id(n),
        name: Some(format!("acct-{n}")),
        ou_path,
        tags: BTreeMap::from([("team".into(), team.into()), ("owner".into(), format!("{team}-tag"))]),
        security_contact: ContactLookup::NotSet,
        state: None,
    })
}

/// One finding as a product imported it, in either hub's shape.
#[derive(Debug, Clone)]
struct Seed {
    account: usize,
    ocsf: bool,
    n: usize,
    /// Someone else's field (ASFF) or comment (OCSF) is already on it.
    foreign: bool,
}

fn asff(seed: &Seed) -> Value {
    let mut f = json!({
        "Id": format!("f-{}-{}", seed.account, seed.n), "ProductArn": GUARDDUTY,
        "AwsAccountId": account_id(seed.account), "AwsAccountName": format!("acct-{}", seed.account),
        "RecordState": "ACTIVE", "UpdatedAt": "2026-11-30T00:00:00Z", "Title": "t"
    });
    if seed.foreign {
        f["UserDefinedFields"] = json!({"ticket": "SEC-1"});
    }
    f
}

fn ocsf(seed: &Seed) -> Value {
    let mut f = json!({
        "metadata": {"uid": format!("m-{}-{}", seed.account, seed.n), "product": {"uid": GUARDDUTY_V2}},
        "cloud": {"account": {"uid": account_id(seed.account)}},
        "finding_info": {"uid": format!("gd-{}-{}", seed.account, seed.n), "title": "t", "modified_time": 1_000},
        "status": "New"
    });
    if seed.foreign {
        f["comment"] = json!("triaged by alice");
    }
    f
}

fn decoded(seed: &Seed) -> Finding {
    if seed.ocsf {
        securityhub_enricher::core::ocsf::decode(&ocsf(seed).to_string()).unwrap()
    } else {
        serde_json::from_value(asff(seed)).unwrap()
    }
}

/// The finding as the hub holds it now, as an event would carry it.
fn as_event(hub: &InMemoryHub, seed: &Seed, custom_action: bool) -> Value {
    let stored = hub.stored(&decoded(seed).identifier()).unwrap();
    if seed.ocsf {
        let mut f = ocsf(seed);
        if let Some(comment) = stored.ocsf.as_ref().and_then(|o| o.comment.clone()) {
            f["comment"] = json!(comment);
        }
        return json!({"source": "aws.securityhub", "detail-type": "Findings Imported V2", "detail": {"findings": [f]}});
    }
    let mut f = asff(seed);
    f["UserDefinedFields"] = json!(stored.user_defined_fields);
    if let Some(note) = &stored.note {
        f["Note"] = json!({"Text": note.text, "UpdatedBy": note.updated_by});
    }
    let detail_type =
        if custom_action { "Security Hub Findings - Custom Action" } else { "Security Hub Findings - Imported" };
    json!({"source": "aws.securityhub", "detail-type": detail_type,
           "detail": {"actionName": "re-enrich", "findings": [f]}})
}

fn batch(events: &[Value]) -> IncomingBatch {
    use base64::Engine as _;
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"eventID": format!("shardId-0:{i}"), "partitionKey": "p",
                   "data": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(e).unwrap())})
        })
        .collect();
    serde_json::from_value(Value::Array(records)).unwrap()
}

/// One configuration, as wiring gives it to every path.
#[derive(Debug, Clone)]
struct Setting {
    routing: RoutingRules,
    tag_filter: TagFilter,
}

fn builder(
    setting: &Setting,
    hub: &Arc<InMemoryHub>,
    source: Arc<StaticSource>,
    bus: &Arc<InMemoryBus>,
) -> EnricherBuilder {
    EnricherBuilder::new()
        .source(source)
        .hub(hub.clone())
        .hub_v2(hub.clone())
        .events(bus.clone())
        .routing(setting.routing.clone())
        .tag_filter(setting.tag_filter.clone())
        .backoff(Duration::from_millis(1), 5)
}

fn sweeper(setting: &Setting, hub: &Arc<InMemoryHub>, source: Arc<StaticSource>, bus: &Arc<InMemoryBus>) -> Sweeper {
    builder(setting, hub, source, bus).build_sweeper(hub.clone(), READS)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn no_progress(_: &SweepReport) {}

fn writes(hub: &InMemoryHub) -> (usize, usize) {
    (hub.call_count(), hub.v2_calls.lock().unwrap().len())
}

fn policy_setting() -> Setting {
    Setting {
        routing: RoutingRules { policy: RoutingPolicy::parse(POLICY).unwrap(), owner_tag_key: "owner".into() },
        tag_filter: TagFilter::All,
    }
}

fn org(accounts: usize) -> Arc<StaticSource> {
    Arc::new(StaticSource::new(
        (0..accounts).map(|n| account(n, if n % 2 == 0 { "payments" } else { "data" }, n % 3 != 2)),
    ))
}

#[tokio::test(start_paused = true)]
async fn a_sweep_right_after_the_stream_writes_nothing_and_keeps_the_policys_routing() {
    let setting = policy_setting();
    let hub = Arc::new(InMemoryHub::default());
    let bus = Arc::new(InMemoryBus::default());
    let seeds: Vec<Seed> =
        (0..120).map(|n| Seed { account: n % 6, ocsf: n % 4 == 0, n, foreign: n % 5 == 0 }).collect();
    hub.import(seeds.iter().map(decoded));
    let stream = builder(&setting, &hub, org(6), &bus).build();
    let events: Vec<Value> = seeds.iter().map(|s| as_event(&hub, s, false)).collect();
    let report = stream.handle(batch(&events), far()).await;
    assert!(report.tally.balances(), "{}", report.tally);
    let written_by_stream = writes(&hub);
    let published_by_stream = bus.details().len();

    let sweep = sweeper(&setting, &hub, org(6), &bus).run(&[], None, far(), &no_progress).await;
    assert!(sweep.balances(), "{sweep:?}");
    assert_eq!((sweep.examined, sweep.current), (120, 120 - 24 / 4), "{sweep:?}");
    assert_eq!(sweep.skipped.get("foreign_comment"), Some(&6), "someone else's comment is never ours to write");
    assert_eq!(writes(&hub), written_by_stream, "a sweep right after the stream makes no BatchUpdateFindings call");
    assert_eq!(bus.details().len(), published_by_stream, "nothing written, nothing published");
    let f = hub.stored(&decoded(&seeds[1]).identifier()).unwrap();
    assert_eq!(f.user_defined_fields[keys::OWNER], "data-tag", "the owner tag where no rule names an owner");
    assert_eq!(f.user_defined_fields[keys::ENVIRONMENT], "prod", "the policy's environment");
    let p = hub.stored(&decoded(&seeds[6]).identifier()).unwrap();
    assert_eq!(p.user_defined_fields[keys::OWNER], "payments", "the policy's owner, not the tag's");
}

#[tokio::test(start_paused = true)]
async fn a_sweep_enriches_both_hubs_with_routing_and_publishes_every_finding_it_writes() {
    let setting = policy_setting();
    let hub = Arc::new(InMemoryHub::default());
    let bus = Arc::new(InMemoryBus::default());
    // Findings from before the deployment, on both hubs; none has ever been through the stream.
    let seeds: Vec<Seed> = (0..150).map(|n| Seed { account: n % 5, ocsf: n % 3 == 0, n, foreign: false }).collect();
    hub.import(seeds.iter().map(decoded));
    let sweep = sweeper(&setting, &hub, org(5), &bus).run(&[], None, far(), &no_progress).await;
    assert!(sweep.balances() && sweep.complete(), "{sweep:?}");
    assert_eq!((sweep.examined, sweep.examined_v2, sweep.enriched_complete), (150, 50, 150));
    assert_eq!(sweep.writes.updates_v2.findings_per_call.iter().sum::<usize>(), 50, "every OCSF finding commented");
    assert_eq!(sweep.writes.minimum_calls_v2, 5, "one comment per account");
    assert_eq!(sweep.writes.events.published, 150, "one event per finding written");
    let details = bus.details();
    assert_eq!(details.len(), 150);
    assert!(details.iter().all(|d| d["schema_version"] == "1" && d["account"]["partial"] == false));
    let payments = details.iter().find(|d| d["account"]["id"] == account_id(0)).unwrap();
    assert_eq!(payments["routing"], json!({"owner": "payments", "environment": "prod", "criticality": "high"}));
    let comment = hub.comments.lock().unwrap()[&OcsfFindingId::MetadataUid("m-0-0".into())].clone();
    assert!(comment.contains("Owner: payments."), "{comment}");

    // And the stream, seeing any of these findings again, writes nothing either, even when an
    // analyst asks for them again with a custom action.
    let stream = builder(&setting, &hub, org(5), &bus).build();
    let before = writes(&hub);
    let events: Vec<Value> = seeds.iter().map(|s| as_event(&hub, s, s.n % 2 == 0)).collect();
    let report = stream.handle(batch(&events), far()).await;
    assert!(report.tally.balances());
    assert_eq!(writes(&hub), before, "{}", report.tally);
}

#[tokio::test(start_paused = true)]
async fn a_pending_comment_is_completed_by_the_sweep_and_an_analysts_comment_is_never_touched() {
    let setting = policy_setting();
    let hub = Arc::new(InMemoryHub::default());
    let bus = Arc::new(InMemoryBus::default());
    let seeds =
        [Seed { account: 0, ocsf: true, n: 1, foreign: false }, Seed { account: 0, ocsf: true, n: 2, foreign: true }];
    hub.import(seeds.iter().map(decoded));
    let down = org(1);
    down.fail(&[&account_id(0)]);
    let first = sweeper(&setting, &hub, down, &bus).run(&[], None, far(), &no_progress).await;
    assert_eq!(first.still_partial, 1, "{first:?}");
    let pending = hub.stored(&decoded(&seeds[0]).identifier()).unwrap().ocsf.unwrap().comment.unwrap();
    assert!(pending.starts_with("[securityhub-enricher: pending]"), "{pending}");

    let second = sweeper(&setting, &hub, org(1), &bus).run(&[], None, far(), &no_progress).await;
    assert_eq!((second.enriched_complete, second.skipped.get("foreign_comment")), (1, Some(&1)), "{second:?}");
    let complete = hub.stored(&decoded(&seeds[0]).identifier()).unwrap().ocsf.unwrap().comment.unwrap();
    assert!(complete.starts_with("[securityhub-enricher] "), "{complete}");
    assert_eq!(
        hub.stored(&decoded(&seeds[1]).identifier()).unwrap().ocsf.unwrap().comment.as_deref(),
        Some("triaged by alice")
    );
}

/// A configuration out of the ones a deployment can have.
fn settings() -> impl Strategy<Value = Setting> {
    (0usize..3, any::<bool>()).prop_map(|(policy, allowlist)| Setting {
        routing: match policy {
            0 => RoutingRules::default(),
            1 => RoutingRules { policy: RoutingPolicy::parse(POLICY).unwrap(), owner_tag_key: "owner".into() },
            _ => RoutingRules { policy: RoutingPolicy::parse(POLICY).unwrap(), owner_tag_key: "team".into() },
        },
        tag_filter: if allowlist { TagFilter::Only(["team".to_owned()].into()) } else { TagFilter::All },
    })
}

fn seeds() -> impl Strategy<Value = Vec<Seed>> {
    proptest::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 1..60).prop_map(|rows| {
        rows.into_iter().enumerate().map(|(n, (account, ocsf, foreign))| Seed { account, ocsf, n, foreign }).collect()
    })
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Stream then sweep, and sweep then stream: the second path writes and publishes nothing,
    /// whatever the setting, the hub, the foreign data, and whether an account is unreachable.
    #[test]
    fn a_finding_written_by_one_path_is_current_for_the_other(
        setting in settings(),
        seeds in seeds(),
        unreachable in proptest::option::of(0usize..4),
        custom_action in any::<bool>(),
    ) {
        paused_runtime().block_on(async {
            let source = || {
                let source = org(4);
                if let Some(n) = unreachable {
                    source.fail(&[&account_id(n)]);
                }
                source
            };
            // Stream, then sweep.
            let hub = Arc::new(InMemoryHub::default());
            let bus = Arc::new(InMemoryBus::default());
            hub.import(seeds.iter().map(decoded));
            let events: Vec<Value> = seeds.iter().map(|s| as_event(&hub, s, false)).collect();
            let report = builder(&setting, &hub, source(), &bus).build().handle(batch(&events), far()).await;
            prop_assert!(report.tally.balances());
            let (calls, published) = (writes(&hub), bus.details().len());
            let sweep = sweeper(&setting, &hub, source(), &bus).run(&[], None, far(), &no_progress).await;
            prop_assert!(sweep.balances());
            prop_assert_eq!(writes(&hub), calls, "the sweep rewrote what the stream wrote: {:?}", sweep);
            prop_assert_eq!(bus.details().len(), published);

            // Sweep, then stream (an analyst's custom action bypasses the loop guard).
            let hub = Arc::new(InMemoryHub::default());
            let bus = Arc::new(InMemoryBus::default());
            hub.import(seeds.iter().map(decoded));
            let sweep = sweeper(&setting, &hub, source(), &bus).run(&[], None, far(), &no_progress).await;
            prop_assert!(sweep.balances());
            let (calls, published) = (writes(&hub), bus.details().len());
            let events: Vec<Value> = seeds.iter().map(|s| as_event(&hub, s, custom_action)).collect();
            let report = builder(&setting, &hub, source(), &bus).build().handle(batch(&events), far()).await;
            prop_assert!(report.tally.balances());
            prop_assert_eq!(writes(&hub), calls, "the stream rewrote what the sweep wrote: {}", report.tally);
            prop_assert_eq!(bus.details().len(), published);
            Ok(())
        })?;
    }
}
