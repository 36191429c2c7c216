//! Faults on the local stack, through the fault proxies in front of moto and the emulator:
//! throttling storms, outages, 5xx, connection resets, AccessDenied, a deadline. In every
//! scenario each finding ends enriched or its record is reported failed, a replay of the same
//! batch converges to complete enrichment, and no investigation starts twice.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use loadtest::batches::{event_id, incoming_batch_of_events};
use loadtest::loadgen::{self, Generator};
use loadtest::local::findings::{import_findings, imported_event, sample_finding};
use loadtest::local::org::{OrgSpec, SeededOrg, seed_organization};
use loadtest::local::pipe::LocalPipe;
use loadtest::local::settings::{CACHE_TABLE, JOBS_TABLE, LocalSettings};
use loadtest::local::{control_request, create_table, sdk_config_for};
use loadtest::replay::{Replayer, StreamEntry};
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::service::batch_report::BatchReport;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::investigator::Investigator;
use securityhub_enricher::wiring::Clients;
use serde_json::{Value, json};
use tokio::time::Instant;

/// The proxies hold one rule set each: scenarios take turns.
pub(crate) static PROXIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run through `make test`, which starts the local AWS stack"))
}

async fn set_faults(moto: Value, emulator: Value) {
    for (proxy, rules) in [("LOCAL_AWS_MOTO_FAULTS_URL", moto), ("LOCAL_AWS_EMULATOR_FAULTS_URL", emulator)] {
        let url = env(proxy);
        control_request("POST", &format!("{url}/_faults/reset"), None).await.unwrap();
        control_request("POST", &format!("{url}/_faults/rules"), Some(json!({"rules": rules}).to_string()))
            .await
            .unwrap();
    }
}

async fn clear_faults() {
    set_faults(json!([]), json!([])).await;
}

struct Scenario {
    org: SeededOrg,
    sdk: aws_config::SdkConfig,
    findings: Vec<Value>,
    admin: String,
}

impl Scenario {
    /// Every account of the organization, as behavior graph members.
    fn account_ids(&self) -> Vec<String> {
        self.org.accounts.iter().map(|a| a.id.clone()).collect()
    }

    async fn new() -> Self {
        clear_faults().await;
        let admin = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
        let sdk = sdk_config_for(&admin).await.unwrap();
        let org = seed_organization(
            &aws_sdk_organizations::Client::new(&sdk),
            &aws_sdk_account::Client::new(&sdk),
            &OrgSpec { accounts: 4, depth: 2, fanout: 2, seed: 13 },
        )
        .await
        .unwrap();
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        create_table(&dynamodb, CACHE_TABLE, "AccountId").await.unwrap();
        create_table(&dynamodb, JOBS_TABLE, "JobId").await.unwrap();
        let findings: Vec<Value> = (0..24)
            .map(|n| {
                let a = &org.accounts[n % 4];
                sample_finding(&a.id, &a.name, n)
            })
            .collect();
        import_findings(&aws_sdk_securityhub::Client::new(&sdk), &findings).await.unwrap();
        Scenario { org, sdk, findings, admin }
    }

    /// A fresh enricher environment (empty memory), as after a cold start.
    async fn enricher(&self, calls: &ApiCalls) -> (Enricher, Clients) {
        let config = LocalSettings::fast(CACHE_TABLE)
            .set("JOBS_TABLE", JOBS_TABLE)
            .set("LOOKUP_BUDGET_SECONDS", 10)
            .enricher()
            .unwrap();
        let clients = Clients::for_enricher("enricher", &config, &self.sdk, calls).await;
        (Enricher::from_clients(&config, &clients), clients)
    }

    fn batch(&self) -> IncomingBatch {
        let events: Vec<Value> =
            self.findings.iter().enumerate().map(|(n, f)| imported_event(std::slice::from_ref(f), n)).collect();
        incoming_batch_of_events(&events)
    }

    /// What Security Hub holds, read past the fault proxy.
    async fn stored(&self) -> BTreeMap<String, std::collections::HashMap<String, String>> {
        let direct =
            aws_sdk_securityhub::config::Builder::from(&self.sdk).endpoint_url(env("LOCAL_AWS_EMULATOR_URL")).build();
        let hub = aws_sdk_securityhub::Client::from_conf(direct);
        let found = hub.get_findings().max_results(100).send().await.unwrap();
        found
            .findings
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.id.unwrap_or_default(), f.user_defined_fields.unwrap_or_default()))
            .collect()
    }

    /// Accounts in the cache table's refresh queue, read past the fault proxy.
    async fn queued_for_refresh(&self) -> HashSet<String> {
        use securityhub_enricher::ports::sweep_state::SweepState as _;
        let direct = aws_sdk_dynamodb::config::Builder::from(&self.sdk).endpoint_url(env("LOCAL_AWS_MOTO_URL")).build();
        let state = securityhub_enricher::adapters::cache_table::sweep_state::DynamoSweepState::new(
            aws_sdk_dynamodb::Client::from_conf(direct),
            CACHE_TABLE,
        );
        state.queued().await.unwrap().into_iter().collect()
    }

    /// Each finding is enriched (complete or partial), or deferred with its account in the
    /// refresh queue, unless its record is reported failed.
    async fn assert_nothing_lost(&self, report: &BatchReport) {
        assert!(report.tally.balances(), "{}", report.tally);
        let failed: HashSet<String> =
            report.response.batch_item_failures.iter().filter_map(|f| f.item_identifier.clone()).collect();
        let stored = self.stored().await;
        let queued = self.queued_for_refresh().await;
        for (n, finding) in self.findings.iter().enumerate() {
            if failed.contains(&event_id(n)) {
                continue;
            }
            let id = finding["Id"].as_str().unwrap();
            let enriched = stored.get(id).and_then(|f| f.get("findingEnriched")).map(String::as_str);
            let deferred = queued.contains(finding["AwsAccountId"].as_str().unwrap());
            assert!(
                matches!(enriched, Some("True" | "Partial")) || deferred,
                "{id} neither enriched, deferred nor retried: {enriched:?}"
            );
        }
    }

    /// With the faults gone, replaying the batch (and its retries) ends with every finding
    /// completely enriched.
    async fn assert_replay_converges(&self) {
        clear_faults().await;
        let calls = ApiCalls::default();
        let (enricher, _) = self.enricher(&calls).await;
        for _ in 0..3 {
            let report = enricher.handle(self.batch(), Instant::now() + Duration::from_secs(60)).await;
            if report.response.batch_item_failures.is_empty() {
                break;
            }
        }
        let names: BTreeMap<&str, &str> = self.org.accounts.iter().map(|a| (a.id.as_str(), a.name.as_str())).collect();
        let stored = self.stored().await;
        for finding in &self.findings {
            let fields = &stored[finding["Id"].as_str().unwrap()];
            assert_eq!(fields["findingEnriched"], "True", "{fields:?}");
            assert_eq!(fields["AccountName"], names[finding["AwsAccountId"].as_str().unwrap()]);
        }
    }
}

/// Runs a scenario on its own thread with a large stack: the SDK's retry path over reset
/// connections nests deeper than the 2 MiB of a test thread allows in unoptimized builds.
/// Optimized builds, as deployed, pass every scenario here on 2 MiB, tokio's default worker
/// stack (checked with the size set to `2 << 20` under `cargo test --release --test local_stack faults::`).
/// The future is built on that thread, as the handler's future is not `Send`.
fn on_big_stack<F, Fut>(scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::Builder::new().stack_size(32 << 20).spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(scenario())
    });
    if let Err(panic) = thread.expect("scenario thread").join() {
        std::panic::resume_unwind(panic);
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[test]
fn organizations_throttling_storm_degrades_then_converges() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(
            json!([{"service": "organizations", "operation": "*", "fault": "throttle", "probability": 0.8}]),
            json!([]),
        )
        .await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        assert!(report.response.batch_item_failures.is_empty(), "throttled lookups never block the shard");
        assert!(calls.snapshot().values().map(|c| c.throttled).sum::<u64>() > 0, "the storm reached the SDK");
        assert!(report.tally.findings_deferred > 0, "{}", report.tally);
        assert_eq!(report.tally.findings_enriched_partial, 0, "deferred, not written Partial");
        s.assert_nothing_lost(&report).await;
        s.assert_replay_converges().await;
    });
}

#[test]
fn cache_table_outage_enriches_without_it() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(json!([{"service": "dynamodb", "operation": "*", "fault": "error503"}]), json!([])).await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        assert!(report.prefetch.store_errors >= 1);
        assert_eq!(report.tally.findings_enriched_partial, 0, "Organizations answered directly");
        // The jobs table is DynamoDB too: findings that wanted an investigation go back for retry,
        // so no investigation is lost; the others are enriched.
        let wanted = report.investigations.findings_selected;
        assert!(wanted > 0);
        assert_eq!(report.tally.records_failed, wanted, "{}", report.tally);
        assert_eq!(report.tally.findings_enriched, 24 - wanted);
        s.assert_nothing_lost(&report).await;
        s.assert_replay_converges().await;
    });
}

#[test]
fn security_hub_throttling_and_5xx_are_retried() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(
            json!([]),
            json!([
                {"service": "securityhub", "operation": "*", "fault": "throttle", "probability": 0.4},
                {"service": "securityhub", "operation": "*", "fault": "error500", "probability": 0.2},
                {"service": "securityhub", "operation": "*", "fault": "latency", "latency_ms": 50, "probability": 0.5},
            ]),
        )
        .await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        assert!(report.writes.updates.throttled + report.writes.updates.transient_errors > 0, "faults were injected");
        s.assert_nothing_lost(&report).await;
        s.assert_replay_converges().await;
    });
}

#[test]
fn security_hub_outage_hands_records_back_before_the_deadline() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(json!([]), json!([{"service": "securityhub", "operation": "*", "fault": "throttle"}])).await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let started = Instant::now();
        // 3 s of margin (DEADLINE_MARGIN_MS) leaves 2 s of work.
        let report = enricher.handle(s.batch(), Instant::now() + Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "answered before the deadline");
        assert_eq!(report.tally.records_failed, 24, "{}", report.tally);
        assert_eq!(report.response.batch_item_failures.len(), 24);
        s.assert_nothing_lost(&report).await;
        s.assert_replay_converges().await;
    });
}

#[test]
fn connection_resets_and_latency_on_moto_are_absorbed() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(
            json!([
                {"service": "organizations", "operation": "DescribeAccount", "fault": "reset", "probability": 0.4},
                {"service": "dynamodb", "operation": "BatchGetItem", "fault": "reset", "probability": 0.5},
                {"service": "organizations", "operation": "*", "fault": "latency", "latency_ms": 30},
            ]),
            json!([]),
        )
        .await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        assert!(report.response.batch_item_failures.is_empty(), "{}", report.tally);
        s.assert_nothing_lost(&report).await;
        s.assert_replay_converges().await;
    });
}

#[test]
fn access_denied_on_contacts_enriches_without_them() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        set_faults(
            json!([{"service": "account", "operation": "GetAlternateContact", "fault": "access_denied"}]),
            json!([]),
        )
        .await;
        let calls = ApiCalls::default();
        let (enricher, _) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        assert_eq!(report.tally.findings_enriched, 24);
        assert_eq!(report.tally.findings_enriched_partial, 0);
        for fields in s.stored().await.values() {
            assert_eq!(fields["findingEnriched"], "True");
            assert!(!fields.contains_key("securityContact"), "an unreadable contact is left out, never guessed");
        }
    });
}

#[test]
fn detective_failures_never_start_an_investigation_twice() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        let s = Scenario::new().await;
        let emulator = env("LOCAL_AWS_EMULATOR_URL");
        control_request(
            "POST",
            &format!("{emulator}/_emulator/detective/graphs"),
            Some(
                json!({"account_id": s.admin, "region": "us-east-1", "count": 1, "members": s.account_ids()})
                    .to_string(),
            ),
        )
        .await
        .unwrap();
        let calls = ApiCalls::default();
        let (enricher, _clients) = s.enricher(&calls).await;
        let report = enricher.handle(s.batch(), later()).await;
        let jobs = report.investigations.jobs_created;
        assert!(jobs > 0, "{:?}", report.investigations);
        set_faults(
            json!([]),
            json!([
                {"service": "detective", "operation": "*", "fault": "throttle", "probability": 0.5},
                {"service": "detective", "operation": "*", "fault": "error500", "probability": 0.2},
            ]),
        )
        .await;
        let settings = LocalSettings::named()
            .set("JOBS_TABLE", JOBS_TABLE)
            .set("CACHE_TABLE", CACHE_TABLE)
            .set("DETECTIVE_RPS", 100)
            .set("DETECTIVE_BURST", 100)
            .set("INVESTIGATION_MAX_ATTEMPTS", 10)
            .set("DEADLINE_MARGIN_MS", 10);
        let mut investigator = Investigator::from_clients(
            &settings.investigator().unwrap(),
            &Clients::for_investigator(&s.sdk, &calls).await,
            "us-east-1",
        );
        // A StartInvestigation that still fails after the SDK's retries waits a minute or more
        // when deployed; here the next pass may try again at once, so that every job ends.
        investigator.retry_base = Duration::ZERO;
        // Replays and duplicate deliveries while Detective misbehaves.
        enricher.handle(s.batch(), later()).await;
        let mut finished = 0;
        for _ in 0..60 {
            let pass = investigator.run_pass(later()).await;
            finished += pass.completed + pass.failed;
            if pass.active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let listed =
            control_request("GET", &format!("{emulator}/_emulator/detective/investigations?account={}", s.admin), None)
                .await
                .unwrap();
        let listed: Value = serde_json::from_str(&listed).unwrap();
        let investigations =
            listed.as_array().or_else(|| listed["investigations"].as_array()).expect("a list of investigations");
        let mut entities: Vec<&str> =
            investigations.iter().filter_map(|i| i["EntityArn"].as_str().or(i["entity_arn"].as_str())).collect();
        let started = entities.len();
        entities.sort_unstable();
        entities.dedup();
        assert_eq!(started, entities.len(), "no entity was investigated twice");
        assert!(started <= jobs, "{started} investigations for {jobs} jobs");
        assert_eq!(finished, jobs, "every job ended (complete, or failed after retries)");
    });
}

/// Replaying generated findings into Kinesis while it fails entries (as an over-limit shard
/// does) and throttles whole requests: every event lands exactly once, keyed by its account.
#[test]
fn replay_into_kinesis_lands_every_event_once_through_partial_failures() {
    if !crate::stack_up() {
        return;
    }
    on_big_stack(|| async {
        let _turn = PROXIES.lock().await;
        clear_faults().await;
        let account = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
        let sdk = sdk_config_for(&account).await.unwrap();
        let calls = ApiCalls::default();
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(&sdk).interceptor(calls.clone()).build(),
        );
        let pipe = LocalPipe::create(kinesis.clone(), "replayed", 3).await.unwrap();
        let mut generator = Generator::new(300, 11);
        let events: Vec<Value> = (0..1_200).map(|i| loadgen::imported_event(&[generator.finding().1], i)).collect();
        let entries: Vec<StreamEntry> = events.iter().map(StreamEntry::for_event).collect();
        set_faults(
            json!([
                {"service": "kinesis", "operation": "PutRecords", "account": account, "fault": "throttle", "probability": 0.3},
                {"service": "kinesis", "operation": "PutRecords", "account": account, "fault": "partial_failure",
                 "probability": 0.6, "entry_probability": 0.3},
            ]),
            json!([]),
        )
        .await;
        let stats = Replayer::new(kinesis, "replayed").put(&entries, |_| {}).await.unwrap();
        clear_faults().await;

        assert_eq!((stats.events, stats.put, stats.too_large), (1_200, 1_200, 0), "{stats:?}");
        assert!(stats.entries_retried > 0, "Kinesis failed entries: {stats:?}");
        let put_records = calls.snapshot()[&("Kinesis".to_owned(), "PutRecords".to_owned())];
        assert!(put_records.throttled > 0, "Kinesis throttled requests: {put_records:?}");
        let records: Vec<Value> = pipe.read_batches(10_000).await.unwrap().into_iter().flatten().collect();
        let mut landed: BTreeMap<String, usize> = BTreeMap::new();
        for record in &records {
            use base64::Engine as _;
            let data = base64::engine::general_purpose::STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
            let event: Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(record["partitionKey"], event["detail"]["findings"][0]["AwsAccountId"], "keyed by account");
            *landed.entry(event["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let sent: BTreeMap<String, usize> = events.iter().map(|e| (e["id"].as_str().unwrap().to_owned(), 1)).collect();
        assert_eq!(sent.len(), 1_200, "event ids are distinct");
        assert_eq!(landed, sent, "every event exactly once");
    });
}
