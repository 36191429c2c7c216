//! Detective investigations on the local stack: fan-out from the enricher under duplicate
//! events and replays, the investigator's states end to end, and the failure path.

use std::collections::HashMap;
use std::time::Duration;

use loadtest::batches::incoming_batch_of_events;
use loadtest::local::events::EventTap;
use loadtest::local::findings::{import_findings, imported_event, sample_finding};
use loadtest::local::org::{OrgSpec, seed_organization};
use loadtest::local::settings::{CACHE_TABLE, JOBS_TABLE, LocalSettings};
use loadtest::local::{control_request, create_table, sdk_config_for};
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::investigator::Investigator;
use securityhub_enricher::wiring::Clients;
use serde_json::{Value, json};
use tokio::time::Instant;

struct Setup {
    enricher: Enricher,
    investigator: Investigator,
    calls: ApiCalls,
    securityhub: aws_sdk_securityhub::Client,
    findings: Vec<Value>,
    admin: String,
    graph: String,
    /// The organization's accounts, the graph's members first.
    accounts: Vec<String>,
    /// Every enriched-finding event published (`ENRICHED_EVENTS_BUS`, both functions).
    events: EventTap,
}

/// How a test's world differs from the default one.
struct World {
    max_attempts: u32,
    /// How many of the organization's accounts are members of the behavior graph.
    members: usize,
    detective_rps: &'static str,
    /// The findings, from the organization's (account id, name) pairs.
    findings: fn(&[(String, String)]) -> Vec<Value>,
}

/// sample_finding(.., n) with n % 3 == 0 is GuardDuty HIGH with an IAM user's access key.
fn six_findings(accounts: &[(String, String)]) -> Vec<Value> {
    (0..6)
        .map(|i| {
            let (id, name) = &accounts[i % 2];
            sample_finding(id, name, i * 3)
        })
        .collect()
}

async fn setup(max_attempts: u32) -> Setup {
    setup_world(World { max_attempts, members: 2, detective_rps: "100", findings: six_findings }).await
}

/// An organization of two accounts, six HIGH GuardDuty findings naming one IAM user per
/// account (so two entities) unless the world says otherwise, a behavior graph, the cache and
/// jobs tables.
async fn setup_world(world: World) -> Setup {
    let max_attempts = world.max_attempts;
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "run through `make test`, which starts the local AWS stack");
    let admin = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
    let sdk = sdk_config_for(&admin).await.unwrap();
    let org = seed_organization(
        &aws_sdk_organizations::Client::new(&sdk),
        &aws_sdk_account::Client::new(&sdk),
        &OrgSpec { accounts: 2, depth: 1, fanout: 1, seed: 9 },
    )
    .await
    .unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&dynamodb, CACHE_TABLE, "AccountId").await.unwrap();
    create_table(&dynamodb, JOBS_TABLE, "JobId").await.unwrap();
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").unwrap();
    let member_ids: Vec<&str> = org.accounts.iter().take(world.members).map(|a| a.id.as_str()).collect();
    let created = control_request(
        "POST",
        &format!("{emulator}/_emulator/detective/graphs"),
        Some(json!({"account_id": admin, "region": "us-east-1", "count": 1, "members": member_ids}).to_string()),
    )
    .await
    .unwrap();
    let created: Value = serde_json::from_str(&created).unwrap();
    let graph = created["graph_arns"][0].as_str().unwrap().to_owned();

    // Both functions publish and route as deployed: the investigator's write-back goes through
    // the same pipeline as the stream's writes.
    let bus = format!("enriched-{admin}");
    let events = EventTap::create(&sdk, &bus, &format!("all-{admin}"), &json!({"source": ["securityhub-enricher"]}))
        .await
        .unwrap();
    let policy = json!({"rules": [{"ou_path_prefix": "Root", "set": {"owner": "detection"}}]}).to_string();
    let calls = ApiCalls::default();
    let config = LocalSettings::named()
        .set("ENRICHED_EVENTS_BUS", &bus)
        .set("ROUTING_POLICY", &policy)
        .set("CACHE_TABLE", CACHE_TABLE)
        .set("JOBS_TABLE", JOBS_TABLE)
        .set("ORGANIZATIONS_RPS", 1000)
        .set("ACCOUNT_RPS", 1000)
        .enricher()
        .unwrap();
    let clients = Clients::for_enricher("enricher", &config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let investigator_config = LocalSettings::named()
        .set("ENRICHED_EVENTS_BUS", &bus)
        .set("ROUTING_POLICY", &policy)
        .set("JOBS_TABLE", JOBS_TABLE)
        .set("CACHE_TABLE", CACHE_TABLE)
        .set("DETECTIVE_RPS", world.detective_rps)
        .set("DETECTIVE_BURST", if world.detective_rps == "100" { "100" } else { "1" })
        .set("INVESTIGATION_MAX_ATTEMPTS", max_attempts)
        .set("DEADLINE_MARGIN_MS", 10)
        .investigator()
        .unwrap();
    let investigator =
        Investigator::from_clients(&investigator_config, &Clients::for_investigator(&sdk, &calls).await, "us-east-1");

    let accounts: Vec<(String, String)> = org.accounts.iter().map(|a| (a.id.clone(), a.name.clone())).collect();
    let findings = (world.findings)(&accounts);
    // Set-up and checks act as the test, not as a function (the permission check skips them).
    let securityhub = aws_sdk_securityhub::Client::new(&sdk);
    import_findings(&securityhub, &findings).await.unwrap();
    let accounts = accounts.into_iter().map(|(id, _)| id).collect();
    Setup { enricher, investigator, calls, securityhub, findings, admin, graph, accounts, events }
}

/// Every finding as its own record, each twice (EventBridge delivers at least once).
fn duplicated_batch(findings: &[Value]) -> IncomingBatch {
    let events: Vec<Value> =
        findings.iter().chain(findings).enumerate().map(|(n, f)| imported_event(std::slice::from_ref(f), n)).collect();
    incoming_batch_of_events(&events)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn fields_of(hub: &aws_sdk_securityhub::Client) -> Vec<(HashMap<String, String>, String)> {
    let found = hub.get_findings().max_results(100).send().await.unwrap();
    found
        .findings
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.user_defined_fields.unwrap_or_default(), f.note.and_then(|n| n.text).unwrap_or_default()))
        .collect()
}

async fn run_until(
    investigator: &Investigator,
    done: impl Fn(&securityhub_enricher::service::investigator::PassReport) -> bool,
) {
    for _ in 0..40 {
        let report = investigator.run_pass(soon()).await;
        if done(&report) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the investigator did not get there in 40 passes");
}

#[tokio::test]
async fn one_investigation_per_entity_and_window_however_often_findings_arrive() {
    if !crate::stack_up() {
        return;
    }
    let s = setup(3).await;
    let first = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert!(first.response.batch_item_failures.is_empty(), "{}", first.tally);
    assert_eq!(first.investigations.jobs_created, 2, "{:?}", first.investigations);
    // A replay of the whole batch (a retry, or the Pipe's bisection) joins the same jobs.
    let replay = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert_eq!(replay.investigations.jobs_created, 0);
    assert_eq!(replay.investigations.jobs_joined, 2);

    // The stream's writes are published (each batch writes what its events carry: twice here).
    let by_the_stream = s.events.received().await.unwrap();
    assert_eq!(by_the_stream.len(), 2 * s.findings.len());

    let started = s.investigator.run_pass(soon()).await;
    assert_eq!(started.started, 2);
    let mut completed = 0;
    for _ in 0..40 {
        completed += s.investigator.run_pass(soon()).await.completed;
        if completed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(completed, 2);
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 2, "exactly one per (entity, window)");

    for (fields, note) in fields_of(&s.securityhub).await {
        assert_eq!(fields["investigate"], "complete");
        assert!(fields.contains_key("investigationSeverity") && fields.contains_key("investigationId"));
        assert_eq!(fields["findingEnriched"], "True", "the account fields are kept");
        assert!(fields.contains_key("AccountName"));
        assert!(note.starts_with("Account ") && note.contains(": severity "), "{note}");
        assert!(note.chars().count() <= 512);
        assert_eq!(fields["owner"], "detection", "the routing policy's owner, kept by the write-back");
    }
    // The investigator's write-back is published like the stream's writes: one event per finding
    // written with its verdict, the same schema and routing.
    let by_the_investigator = s.events.received().await.unwrap();
    assert_eq!(by_the_investigator.len(), s.findings.len(), "{by_the_investigator:?}");
    for event in by_the_stream.iter().chain(&by_the_investigator) {
        assert_eq!(event["detail"]["routing"]["owner"], "detection", "{event}");
        assert_eq!(event["detail"]["schema_version"], "1");
    }

    // The findings come back with investigate=complete: no job, no investigation.
    let again = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert_eq!(again.investigations.jobs_created, 0);
    s.investigator.run_pass(soon()).await;
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 2);
}

#[tokio::test]
async fn failed_investigations_end_in_investigate_failed() {
    if !crate::stack_up() {
        return;
    }
    let s = setup(1).await;
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").unwrap();
    for f in &s.findings {
        let entity = format!("arn:aws:iam::{}:user/admin-user", f["AwsAccountId"].as_str().unwrap());
        control_request(
            "POST",
            &format!("{emulator}/_emulator/detective/fail"),
            Some(json!({"entity_arn": entity, "fail": true}).to_string()),
        )
        .await
        .unwrap();
    }
    let report = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert_eq!(report.investigations.jobs_created, 2);
    run_until(&s.investigator, |r| r.failed == 2 || (r.active == 0 && r.failed == 0 && r.started == 0)).await;
    assert_eq!(
        s.calls.calls("Detective", "StartInvestigation"),
        2,
        "one attempt each with INVESTIGATION_MAX_ATTEMPTS=1"
    );
    for (fields, note) in fields_of(&s.securityhub).await {
        assert_eq!(fields["investigate"], "failed");
        assert!(note.contains("Detective investigation failed"), "{note}");
    }
}

/// A finding of `account` naming the IAM user `user`, with this severity and fields.
fn user_finding(account: &str, name: &str, n: usize, user: &str, severity: &str, fields: Value) -> Value {
    let mut f = sample_finding(account, name, n * 3);
    f["Resources"] = json!([{"Type": "AwsIamUser", "Id": format!("arn:aws:iam::{account}:user/{user}")}]);
    f["Severity"] = json!({"Label": severity, "Original": severity});
    f["UserDefinedFields"] = fields;
    f
}

async fn investigated_entities(admin: &str) -> Vec<String> {
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").unwrap();
    let dump = control_request("GET", &format!("{emulator}/_emulator/detective/investigations?account={admin}"), None)
        .await
        .unwrap();
    let mut found: Vec<Value> = serde_json::from_str(&dump).unwrap();
    found.sort_by(|a, b| a["CreatedTime"].as_str().cmp(&b["CreatedTime"].as_str()));
    found.iter().map(|i| i["EntityArn"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn accounts_outside_the_graph_end_not_covered_without_a_call() {
    if !crate::stack_up() {
        return;
    }
    // Of two accounts, only the first is a member of the graph.
    let s = setup_world(World { max_attempts: 3, members: 1, detective_rps: "100", findings: six_findings }).await;
    let report = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert_eq!(report.investigations.jobs_created, 2, "{:?}", report.investigations);
    let pass = s.investigator.run_pass(soon()).await;
    assert_eq!((pass.started, pass.not_covered), (1, 1), "{pass:?}");
    assert!(pass.balances());
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 1, "never called for the uncovered account");
    run_until(&s.investigator, |r| r.completed == 1).await;
    assert_eq!(s.calls.calls("Detective", "ListMembers"), 1, "the member list is cached between passes");
    let outside = &s.accounts[1];
    for (fields, note) in fields_of(&s.securityhub).await {
        if note.contains(outside.as_str()) {
            assert_eq!(fields["investigate"], "not-covered");
            assert!(note.contains(&format!("account {outside} is not a member of Detective graph")), "{note}");
        } else {
            assert_eq!(fields["investigate"], "complete", "{note}");
        }
    }
}

#[tokio::test]
async fn an_entity_the_graph_rejects_ends_not_covered_and_is_not_retried() {
    if !crate::stack_up() {
        return;
    }
    let s = setup(3).await;
    let (first, second): (Vec<Value>, Vec<Value>) =
        s.findings.iter().cloned().partition(|f| f["AwsAccountId"] == s.accounts[0].as_str());
    s.enricher.handle(duplicated_batch(&first), soon()).await;
    assert_eq!(s.investigator.run_pass(soon()).await.started, 1);
    // The second account leaves the graph after the investigator cached the member list.
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").unwrap();
    let body = json!({"graph_arn": s.graph, "members": [s.accounts[0]]}).to_string();
    control_request("POST", &format!("{emulator}/_emulator/detective/members"), Some(body)).await.unwrap();
    s.enricher.handle(duplicated_batch(&second), soon()).await;
    let pass = s.investigator.run_pass(soon()).await;
    assert_eq!(pass.not_covered, 1, "{pass:?}");
    assert_eq!(pass.retried, 0);
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 2, "one call, rejected, never retried");
    s.investigator.run_pass(soon()).await;
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 2);
}

#[tokio::test]
async fn a_short_quota_goes_to_explicit_requests_then_severity() {
    if !crate::stack_up() {
        return;
    }
    fn three_priorities(accounts: &[(String, String)]) -> Vec<Value> {
        let (id, name) = &accounts[0];
        let mut asked = user_finding(id, name, 1, "asked", "LOW", json!({"investigate": "true"}));
        // Not GuardDuty: only the automation rule's investigate=true selects it.
        asked["ProductArn"] = json!("arn:aws:securityhub:us-east-1::product/aws/inspector");
        asked["ProductName"] = json!("inspector");
        vec![
            user_finding(id, name, 0, "high", "HIGH", json!({})),
            asked,
            user_finding(id, name, 2, "critical", "CRITICAL", json!({})),
        ]
    }
    // One start per two seconds: a pass of a second starts one job.
    let s = setup_world(World { max_attempts: 3, members: 2, detective_rps: "0.5", findings: three_priorities }).await;
    let report = s.enricher.handle(duplicated_batch(&s.findings), soon()).await;
    assert_eq!(report.investigations.jobs_created, 3, "{:?}", report.investigations);
    assert_eq!(report.investigations.explicit_requests, 1);
    let short = || Instant::now() + Duration::from_millis(1200);
    let first = s.investigator.run_pass(short()).await;
    assert_eq!((first.started, first.waiting), (1, 2), "{first:?}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(s.investigator.run_pass(short()).await.started, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let _ = s.investigator.run_pass(short()).await;
    let account = &s.accounts[0];
    let user = |name: &str| format!("arn:aws:iam::{account}:user/{name}");
    let order = investigated_entities(&s.admin).await;
    assert_eq!(order[..2], [user("asked"), user("critical")], "{order:?}");
}

#[tokio::test]
async fn jobs_of_one_actor_from_different_batches_join_one_investigation() {
    if !crate::stack_up() {
        return;
    }
    fn two_days(accounts: &[(String, String)]) -> Vec<Value> {
        let (id, name) = &accounts[0];
        let mut second = user_finding(id, name, 1, "traveller", "HIGH", json!({}));
        second["FirstObservedAt"] = json!("2026-11-23T09:00:00.000Z");
        second["UpdatedAt"] = json!("2026-11-23T09:00:00.000Z");
        vec![user_finding(id, name, 0, "traveller", "HIGH", json!({})), second]
    }
    let s = setup_world(World { max_attempts: 3, members: 2, detective_rps: "100", findings: two_days }).await;
    // A day apart, in two batches: two jobs (their windows start on different days).
    for finding in &s.findings {
        let report = s.enricher.handle(duplicated_batch(std::slice::from_ref(finding)), soon()).await;
        assert_eq!(report.investigations.jobs_created, 1, "{:?}", report.investigations);
    }
    let pass = s.investigator.run_pass(soon()).await;
    assert_eq!((pass.started, pass.joined), (1, 1), "{pass:?}");
    assert!(pass.balances());
    run_until(&s.investigator, |r| r.completed == 1).await;
    assert_eq!(s.calls.calls("Detective", "StartInvestigation"), 1, "one investigation for the actor");
    let fields = fields_of(&s.securityhub).await;
    assert_eq!(fields.len(), 2);
    for (fields, note) in fields {
        assert_eq!(fields["investigate"], "complete", "{note}");
    }
}
