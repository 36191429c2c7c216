//! Each AWS adapter against the local stack (moto's server and the project's emulator), and
//! one end-to-end run through Kinesis. Run through `make test`, which starts the stack.
//! Every test acts as its own AWS account, so tests run in parallel without sharing state.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use loadtest::local::findings::{import_findings, imported_event, sample_finding};
use loadtest::local::harness::LocalRun;
use loadtest::local::org::{OrgSpec, SeededOrg, seed_organization};
use loadtest::local::pipe::{LocalPipe, as_event_source_mapping};
use loadtest::local::settings::LocalSettings;
use loadtest::local::{create_table, sdk_config_for};
use securityhub_enricher::adapters::cache_table::ledger::DynamoLedger;
use securityhub_enricher::adapters::cache_table::schema::LEDGER_KEY;
use securityhub_enricher::adapters::cache_table::store::DynamoStore;
use securityhub_enricher::adapters::cache_table::sweep_state::DynamoSweepState;
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::adapters::securityhub::SecurityHubWriter;
use securityhub_enricher::config::AccountEventsConfig;
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::account::{AccountRecord, ContactLookup};
use securityhub_enricher::core::account_change::Change;
use securityhub_enricher::core::cache_entry::CacheEntry;
use securityhub_enricher::core::enrich::{EnrichmentPayload, UPDATED_BY};
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::finding::FindingId;
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::ports::findings::{FindingsWriter, WriteError};
use securityhub_enricher::ports::ledger::QuotaLedger;
use securityhub_enricher::ports::metadata::MetadataStore;
use securityhub_enricher::ports::sweep_state::{Checkpoint, SweepState};
use securityhub_enricher::service::account_events::forget_changed;
use securityhub_enricher::service::directory::{Resolution, WarmScope};
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::wiring::{Clients, account_events_tables, organizations_source};
use serde_json::Value;
use tokio::time::Instant;

/// A fresh account of the local stack, and the configuration an enricher in it would read.
struct Stack {
    account: String,
    sdk: aws_config::SdkConfig,
}

impl Stack {
    async fn new() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "these tests need the local AWS stack: run `make test` (or scripts/local-aws run -- cargo test)"
        );
        let account = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
        let sdk = sdk_config_for(&account).await.expect("assume a role in the test's account");
        Stack { account, sdk }
    }

    fn config(&self, table: &str, extra: &[(&str, String)]) -> EnricherConfig {
        let settings = LocalSettings::fast(table).set("LOOKUP_CONCURRENCY", 16);
        extra.iter().fold(settings, |settings, (name, value)| settings.set(name, value)).enricher().unwrap()
    }

    async fn create_cache_table(&self, name: &str) {
        create_table(&aws_sdk_dynamodb::Client::new(&self.sdk), name, "AccountId").await.unwrap();
    }

    async fn seed(&self, spec: OrgSpec) -> SeededOrg {
        let org = aws_sdk_organizations::Client::new(&self.sdk);
        let account = aws_sdk_account::Client::new(&self.sdk);
        seed_organization(&org, &account, &spec).await.expect("seed organization")
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(120)
}

fn entry(account: &str, fresh_for: i64, expires_in: i64) -> CacheEntry {
    let now = now_epoch_seconds();
    let meta = securityhub_enricher::core::account::AccountMetadata::from_finding_name(account, Some("cached"));
    CacheEntry {
        record: AccountRecord::Found(meta),
        fetched_at: now,
        fresh_until: now + fresh_for,
        expires_at: now + expires_in,
    }
}

#[tokio::test]
async fn dynamodb_store_batches_reads_and_writes_and_checks_expiry_on_read() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    stack.create_cache_table("cache").await;
    let calls = ApiCalls::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.sdk).interceptor(calls.clone()).build(),
    );
    let store = DynamoStore::new(client, "cache");

    let ids: Vec<String> = (0..260).map(|i| format!("{:012}", 500_000_000_000u64 + i)).collect();
    let mut entries: Vec<(String, CacheEntry)> = ids.iter().map(|id| (id.clone(), entry(id, 3600, 7200))).collect();
    entries[0].1 = entry(&ids[0], -7200, -1); // expired, but TTL has not deleted it yet
    entries[1].1 = entry(&ids[1], -10, 3600); // stale, still usable as a fallback
    store.put_many(&entries).await.unwrap();
    assert_eq!(calls.calls("DynamoDB", "BatchWriteItem"), 11, "⌈260/25⌉");

    let mut asked = ids.clone();
    asked.push("999999999999".into());
    let found = store.get_many(&asked).await.unwrap();
    assert_eq!(calls.calls("DynamoDB", "BatchGetItem"), 3, "⌈261/100⌉");
    assert_eq!(found.len(), 259, "the expired entry is a miss");
    assert!(!found.contains_key(&ids[0]));
    assert_eq!(found[&ids[1]], entries[1].1, "entries round-trip unchanged");

    assert_eq!(store.invalidate(&ids[..10]).await.unwrap(), 10);
    assert_eq!(store.get_many(&ids[..10]).await.unwrap().len(), 0);
    assert_eq!(store.invalidate_all().await.unwrap(), 250);
    assert!(store.get_many(&ids).await.unwrap().is_empty());
}

/// The quota ledger shares the cache table: claims count, renew, lapse and are released with
/// one UpdateItem each, and invalidating the cache leaves the ledger alone.
#[tokio::test]
async fn quota_ledger_counts_live_claims_in_the_cache_table() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    stack.create_cache_table("cache").await;
    let calls = ApiCalls::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.sdk).interceptor(calls.clone()).build(),
    );
    // Two environments, each with its own client state.
    let a = DynamoLedger::new(client.clone(), "cache").with_prune_after(Duration::from_millis(200));
    let b = DynamoLedger::new(client.clone(), "cache");
    let long = Duration::from_secs(60);
    assert_eq!(a.claim("a", long).await.unwrap().total(), 1);
    assert_eq!(b.claim("b", long).await.unwrap().total(), 2);
    assert_eq!(a.claim("a", long).await.unwrap().total(), 2, "a renewal is not a second claim");
    assert_eq!(calls.calls("DynamoDB", "UpdateItem"), 3);

    let store = DynamoStore::new(client.clone(), "cache");
    store.put_many(&[("123456789012".to_owned(), entry("123456789012", 3600, 7200))]).await.unwrap();
    assert_eq!(store.invalidate_all().await.unwrap(), 1, "the ledger item is not an account");

    b.release("b").await.unwrap();
    assert_eq!(a.claim("a", long).await.unwrap().total(), 1, "b gave its share back");

    // A holder that dies stops renewing; its claim lapses.
    b.claim("b", Duration::from_millis(300)).await.unwrap();
    assert_eq!(a.claim("a", long).await.unwrap().total(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.claim("a", long).await.unwrap().total(), 1, "b's claim lapsed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.claim("a", long).await.unwrap(); // sees b's claim long lapsed
    a.claim("a", long).await.unwrap(); // prunes it
    let item = client
        .get_item()
        .table_name("cache")
        .key("AccountId", aws_sdk_dynamodb::types::AttributeValue::S(LEDGER_KEY.to_owned()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the ledger item");
    assert!(item.contains_key("ExpiresAt"), "DynamoDB's TTL removes an abandoned ledger");
    assert!(item.contains_key("h_a"));
    assert!(!item.contains_key("h_b"), "lapsed claims are pruned: {item:?}");
}

#[tokio::test]
async fn organizations_lookups_at_scale_make_the_fewest_calls() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let org = stack.seed(OrgSpec { accounts: 500, depth: 4, fanout: 3, seed: 11 }).await;
    assert_eq!(org.ou_count, 3 + 9 + 27 + 81);
    stack.create_cache_table("cache").await;
    let contact_role = format!("arn:aws:iam::{}:role/contacts", org.management_account);
    let config = stack.config("cache", &[("CONTACT_ROLE_ARN", contact_role)]);
    let calls = ApiCalls::default();
    let clients = Clients::for_enricher("enricher", &config, &stack.sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);

    // A cold batch touching k accounts spread over the tree, the management account among them.
    let chosen: Vec<_> = org.accounts.iter().step_by(4).collect();
    let mut ids: Vec<String> = chosen.iter().map(|a| a.id.clone()).collect();
    ids.push(org.management_account.clone());
    let k = ids.len() as u64;
    let (resolved, stats) = enricher.directory.prefetch(&ids, later()).await;
    assert_eq!(stats.lookups, ids.len());
    assert_eq!(stats.lookup_failures, 0);

    let distinct_ous: BTreeSet<Vec<String>> =
        chosen.iter().flat_map(|a| (2..=a.ou_path.len()).map(move |n| a.ou_path[..n].to_vec())).collect();
    let ous = distinct_ous.len() as u64;
    assert_eq!(calls.calls("Organizations", "DescribeAccount"), k);
    assert_eq!(calls.calls("Organizations", "ListTagsForResource"), k, "tags fit one page");
    assert_eq!(calls.calls("Organizations", "DescribeOrganizationalUnit"), ous, "each OU described once");
    assert_eq!(calls.calls("Organizations", "ListParents"), k + ous);
    assert_eq!(calls.calls("Organizations", "ListRoots"), 1);
    assert_eq!(calls.calls("Account", "GetAlternateContact"), k);
    assert_eq!(calls.calls("STS", "AssumeRole"), 1, "one AssumeRole per credential lifetime");
    assert_eq!(calls.calls("DynamoDB", "BatchGetItem"), k.div_ceil(100));

    for seeded in &chosen {
        let Some(AccountRecord::Found(meta)) = resolved[&seeded.id].record() else { panic!("{} not found", seeded.id) };
        assert_eq!(meta.name.as_deref(), Some(seeded.name.as_str()));
        assert_eq!(meta.ou_path.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), seeded.ou_path);
        assert_eq!(meta.tags, seeded.tags);
        assert_eq!(matches!(meta.security_contact, ContactLookup::Found(_)), seeded.has_contact, "{}", seeded.id);
        if !seeded.has_contact {
            assert_eq!(meta.security_contact, ContactLookup::NotSet);
        }
    }
    let Some(AccountRecord::Found(management)) = resolved[&org.management_account].record() else { panic!() };
    let ContactLookup::Found(contact) = &management.security_contact else {
        panic!("{:?}", management.security_contact)
    };
    assert_eq!(contact.name, "Organization Security");

    // A warm batch in a new environment (empty memory): the table answers, Organizations rests.
    let before = calls.snapshot();
    let fresh = Enricher::from_clients(&config, &clients);
    let (resolved, stats) = fresh.directory.prefetch(&ids, later()).await;
    let delta = calls.since(&before);
    assert_eq!(stats.store_hits, ids.len());
    assert!(resolved.values().all(|r| matches!(r, Resolution::Fresh(_))));
    assert!(delta.keys().all(|(service, _)| service == "DynamoDB"), "{delta:?}");
    assert_eq!(
        calls.calls("DynamoDB", "BatchGetItem") - before[&("DynamoDB".into(), "BatchGetItem".into())].calls,
        k.div_ceil(100)
    );

    // An account that left the organization is a cached negative answer.
    let (resolved, _) = fresh.directory.prefetch(&["123123123123".to_owned()], later()).await;
    assert_eq!(resolved["123123123123"].record(), Some(&AccountRecord::NotFound));
}

fn finding_id(f: &Value) -> FindingId {
    FindingId { id: f["Id"].as_str().unwrap().into(), product_arn: f["ProductArn"].as_str().unwrap().into() }
}

async fn hub_findings(client: &aws_sdk_securityhub::Client) -> Vec<aws_sdk_securityhub::types::AwsSecurityFinding> {
    let mut all = Vec::new();
    let mut pages = client.get_findings().max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap().findings.unwrap_or_default());
    }
    all
}

#[tokio::test]
async fn securityhub_writer_maps_the_api_answers() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let calls = ApiCalls::default();
    let config = stack.config("unused", &[]);
    let clients = Clients::for_enricher("enricher", &config, &stack.sdk, &calls).await;
    let writer = SecurityHubWriter::new(clients.securityhub.clone());
    let findings: Vec<Value> = (0..3).map(|n| sample_finding(&stack.account, "acct", n)).collect();
    import_findings(&aws_sdk_securityhub::Client::new(&stack.sdk), &findings).await.unwrap();

    let payload = EnrichmentPayload {
        note: Some("Account acct".into()),
        fields: [("findingEnriched".to_owned(), "True".to_owned())].into(),
    };
    let mut ids: Vec<FindingId> = findings.iter().map(finding_id).collect();
    ids.push(FindingId { id: "missing".into(), product_arn: ids[0].product_arn.clone() });
    let unprocessed = writer.batch_update(&ids, &payload).await.unwrap();
    assert_eq!(unprocessed.len(), 1);
    assert_eq!(unprocessed[0].id.id, "missing");
    assert_eq!(unprocessed[0].code, "FindingNotFound");

    let stored = hub_findings(&aws_sdk_securityhub::Client::new(&stack.sdk)).await;
    assert_eq!(stored.len(), 3);
    for f in &stored {
        assert_eq!(f.note.as_ref().and_then(|n| n.updated_by.as_deref()), Some(UPDATED_BY));
        assert_eq!(f.user_defined_fields.as_ref().unwrap()["findingEnriched"], "True");
    }

    let too_many: Vec<FindingId> =
        (0..101).map(|i| FindingId { id: format!("f{i}"), product_arn: "p".into() }).collect();
    match writer.batch_update(&too_many, &payload).await {
        Err(WriteError::Rejected { code, .. }) => assert_eq!(code, "InvalidInputException"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    // The emulator enforces 10 requests/s with a burst of 30, per account and region.
    let mut throttled = 0;
    for _ in 0..40 {
        if let Err(WriteError::Throttled { .. }) = writer.batch_update(&ids[..1], &payload).await {
            throttled += 1;
        }
    }
    assert!(throttled >= 5, "throttled {throttled} of 40");
    assert!(calls.snapshot()[&("SecurityHub".into(), "BatchUpdateFindings".into())].throttled >= 5);
}

#[tokio::test]
async fn end_to_end_through_kinesis_in_both_shapes() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let org = stack.seed(OrgSpec { accounts: 12, depth: 2, fanout: 2, seed: 3 }).await;
    stack.create_cache_table("cache").await;
    let calls = ApiCalls::default();
    // Each batch is checked on its own here, so no batch may hold findings for later ones
    // (coalescing across batches: tests/pending.rs, pending_store.rs and `make demo`).
    let config = stack
        .config("cache", &[("TAG_KEYS", "CostCenter,Environment".into()), ("PENDING_WRITE_DELAY_SECONDS", "0".into())]);
    let clients = Clients::for_enricher("enricher", &config, &stack.sdk, &calls).await;
    let enricher = Arc::new(Enricher::from_clients(&config, &clients));

    let findings: Vec<Value> = (0..240)
        .map(|n| {
            let a = &org.accounts[n % 12];
            sample_finding(&a.id, &a.name, n)
        })
        .collect();
    import_findings(&aws_sdk_securityhub::Client::new(&stack.sdk), &findings).await.unwrap();
    let pipe = LocalPipe::create(aws_sdk_kinesis::Client::new(&stack.sdk), "findings", 2).await.unwrap();
    let events: Vec<Value> =
        findings.iter().enumerate().map(|(n, f)| imported_event(std::slice::from_ref(f), n)).collect();
    pipe.put_events(&events).await.unwrap();

    let batches = pipe.read_batches(60).await.unwrap();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 240);
    let (mut accepted, mut bound) = (0, 0);
    for (n, batch) in batches.iter().enumerate() {
        // Alternate the delivery shapes: Pipe array, then event source mapping.
        let payload = if n % 2 == 0 { Value::Array(batch.clone()) } else { as_event_source_mapping(batch) };
        let incoming: IncomingBatch = serde_json::from_value(payload).unwrap();
        let report = enricher.handle(incoming, later()).await;
        assert!(report.tally.balances(), "{}", report.tally);
        assert!(report.response.batch_item_failures.is_empty(), "{}", report.tally);
        assert_eq!(report.tally.findings_enriched, batch.len());
        accepted += report.writes.updates.findings_per_call.len();
        bound += report.writes.minimum_calls;
    }
    assert_eq!(accepted, bound, "BatchUpdateFindings calls meet the Σ⌈n/100⌉ bound");

    let names: HashMap<&str, &str> = org.accounts.iter().map(|a| (a.id.as_str(), a.name.as_str())).collect();
    let stored = hub_findings(&aws_sdk_securityhub::Client::new(&stack.sdk)).await;
    assert_eq!(stored.len(), 240);
    for f in stored {
        let fields = f.user_defined_fields.unwrap();
        let account = f.aws_account_id.unwrap();
        assert_eq!(fields["findingEnriched"], "True");
        assert_eq!(fields["AccountName"], names[account.as_str()]);
        assert!(fields.contains_key("CostCenter") && !fields.contains_key("Owner"), "TAG_KEYS allowlist: {fields:?}");
        assert_ne!(fields.get("OU").map(String::as_str), Some("forged"), "a tag never overwrites OU");
    }
}

#[tokio::test]
async fn invalidation_makes_the_next_batch_look_the_account_up_again() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let org = stack.seed(OrgSpec { accounts: 3, depth: 1, fanout: 1, seed: 5 }).await;
    stack.create_cache_table("cache").await;
    let config = stack.config("cache", &[]);
    let calls = ApiCalls::default();
    let clients = Clients::for_enricher("enricher", &config, &stack.sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let ids: Vec<String> = org.accounts.iter().map(|a| a.id.clone()).collect();
    enricher.directory.prefetch(&ids, later()).await;
    enricher.directory.prefetch(&ids, later()).await;
    assert_eq!(calls.calls("Organizations", "DescribeAccount"), 3, "the second batch is served from cache");

    assert_eq!(enricher.directory.invalidate(&ids[..1]).await.unwrap(), 1);
    let (_, stats) = enricher.directory.prefetch(&ids, later()).await;
    assert_eq!((stats.lookups, stats.memory_hits), (1, 2));
    assert_eq!(calls.calls("Organizations", "DescribeAccount"), 4);

    // `enricher-admin invalidate --all`, as the operator runs it.
    let admin = Clients::for_enricher("enricher-admin", &config, &stack.sdk, &calls).await;
    Enricher::from_clients(&config, &admin).directory.invalidate_all().await.unwrap();
    let (_, stats) = Enricher::from_clients(&config, &clients).directory.prefetch(&ids, later()).await;
    assert_eq!(stats.lookups, 3, "the table was emptied too");
}

/// The load-test harness's local target, small: generated findings replayed into Kinesis and
/// enriched by one environment per shard; every finding reconciled, none lost. The harness
/// starts cold at a deployment's Organizations rate: findings of accounts not known in time are
/// deferred to the refresher (their accounts queued), which the harness does not run.
#[tokio::test]
async fn the_local_load_test_reconciles_every_generated_finding() {
    if !crate::stack_up() {
        return;
    }
    let _stack = Stack::new().await;
    let run = LocalRun { findings: 300, accounts: 30, seed: 3, shards: 2, batch_size: 100, warm: false };
    let summary = run.run(|_| {}).await.unwrap();
    assert_eq!((summary.replay.put, summary.replay.too_large), (300, 0));
    assert_eq!(summary.findings_enriched + summary.findings_deferred, 300, "{summary:?}");
    assert_eq!(summary.findings_enriched_partial, 0, "deferred, never written Partial: {summary:?}");
    assert_eq!(summary.accepted_update_calls, summary.minimum_update_calls);
    assert_eq!(summary.lost, 0);
    // Writes only for the findings enriched by the stream (none may be, on a slow machine).
    let writes = summary.calls_per_1000_findings.get("SecurityHub.BatchUpdateFindings").copied().unwrap_or(0.0);
    assert_eq!(writes > 0.0, summary.findings_enriched > 0, "{summary:?}");
}

/// An account change forwarded from the management account deletes that account's entry in the
/// DynamoDB cache, and only that one.
#[tokio::test]
async fn an_account_change_forgets_the_accounts_cache_entry() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    stack.create_cache_table("cache").await;
    let (store, queue) = account_events_tables(&AccountEventsConfig { cache_table: "cache".into() }, &stack.sdk);
    // Seeded and checked as the test; only the forgetting is the function's.
    let table = DynamoStore::new(aws_sdk_dynamodb::Client::new(&stack.sdk), "cache");
    let ids = ["222233334444".to_owned(), "555566667777".to_owned()];
    table.put_many(&ids.iter().map(|id| (id.clone(), entry(id, 3600, 7200))).collect::<Vec<_>>()).await.unwrap();
    let moved = serde_json::json!({
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.organizations", "account": stack.account,
        "detail": {"eventSource": "organizations.amazonaws.com", "eventName": "MoveAccount",
                   "requestParameters": {"accountId": ids[0], "sourceParentId": "r-ab12", "destinationParentId": "ou-ab12-cdef5678"}},
    });
    assert_eq!(forget_changed(&store, &queue, &moved).await.unwrap(), Change::Accounts(vec![ids[0].clone()]));
    let left = table.get_many(&ids).await.unwrap();
    assert!(!left.contains_key(&ids[0]) && left.contains_key(&ids[1]), "{:?}", left.keys());
    // ... and queued its account for refresh, in the cache table where the refresher reads it.
    let seen = DynamoSweepState::new(aws_sdk_dynamodb::Client::new(&stack.sdk), "cache");
    assert_eq!(seen.queued().await.unwrap(), vec![ids[0].clone()]);
    seen.dequeue(&ids[..1]).await.unwrap();
    assert!(seen.queued().await.unwrap().is_empty());
}

/// The refresher on the local stack: findings imported before any stream are enriched by its
/// pass over GetFindings (paged and sorted by account in the emulator), in the fewest writes;
/// a second run writes nothing; a queued account's findings are rewritten, and only those.
#[tokio::test]
async fn the_refresher_enriches_findings_from_before_the_stream_and_refreshes_a_queued_account() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let org = stack.seed(OrgSpec { accounts: 6, depth: 1, fanout: 2, seed: 11 }).await;
    stack.create_cache_table("cache").await;
    let calls = ApiCalls::default();
    let config = stack.config("cache", &[]);
    let clients = Clients::for_enricher("refresher", &config, &stack.sdk, &calls).await;
    let refresher = Refresher::from_clients(&config, &clients);
    let findings: Vec<Value> = (0..250)
        .map(|n| {
            let a = &org.accounts[n % 6];
            sample_finding(&a.id, &a.name, n)
        })
        .collect();
    import_findings(&aws_sdk_securityhub::Client::new(&stack.sdk), &findings).await.unwrap();

    let first = refresher.run(later(), &|_| {}).await;
    assert!(first.pass_complete, "{first:?}");
    let sweep = &first.sweep;
    assert!(sweep.balances(), "{sweep:?}");
    // The walk's warm-up runs beside the pass: findings of accounts it had not reached yet
    // waited for it (never looked up twice, never written Partial first) and were written
    // complete by the pass after.
    let passes = 1 + first.extra_passes;
    assert_eq!(first.warm.as_ref().map(|w| (w.accounts, w.cached)), Some((7, 7)), "{first:?}");
    assert_eq!((sweep.examined, sweep.enriched_complete), (250 * passes, 250), "{sweep:?}");
    assert_eq!(sweep.get_findings_calls, 4 * passes, "pages of 100, and the new hub's (empty) page");
    assert_eq!(calls.calls("Organizations", "DescribeAccount"), 0, "no account looked up on its own");
    assert_eq!(sweep.writes.updates.findings_per_call.len(), sweep.writes.minimum_calls, "Σ⌈n/100⌉ over the sweep");
    let stored = hub_findings(&aws_sdk_securityhub::Client::new(&stack.sdk)).await;
    assert!(stored.iter().all(|f| f.user_defined_fields.as_ref().unwrap()["findingEnriched"] == "True"));

    let writes_before = calls.calls("SecurityHub", "BatchUpdateFindings");
    // The next scheduled run finds no pass due (REFRESH_INTERVAL_MINUTES after the last one) and
    // an empty queue: it reads nothing.
    let reads_before = calls.calls("SecurityHub", "GetFindings");
    let idle = refresher.run(later(), &|_| {}).await;
    assert_eq!(idle.idle, Some("no pass is due and the queue is empty"), "{idle:?}");
    assert_eq!(calls.calls("SecurityHub", "GetFindings"), reads_before);
    // The operator's sweep passes anyway, and finds every finding current.
    let second = refresher.complete(&[], later(), &|_| {}).await;
    assert_eq!((second.sweep.examined, second.sweep.current), (250, 250), "{:?}", second.sweep);
    assert_eq!(calls.calls("SecurityHub", "BatchUpdateFindings"), writes_before, "nothing current is rewritten");

    let changed = org.accounts[2].id.clone();
    refresher.state.enqueue(std::slice::from_ref(&changed)).await.unwrap();
    refresher.sweeper.directory.invalidate(std::slice::from_ref(&changed)).await.unwrap();
    let third = refresher.run(later(), &|_| {}).await;
    assert_eq!(third.accounts, vec![changed.clone()]);
    let expected = findings.iter().filter(|f| f["AwsAccountId"] == changed.as_str()).count();
    assert_eq!(third.sweep.examined, expected, "only the queued account's findings: {:?}", third.sweep);
    assert!(refresher.state.queued().await.unwrap().is_empty(), "taken off the queue");

    // The checkpoint item round-trips in DynamoDB.
    let state = DynamoSweepState::new(aws_sdk_dynamodb::Client::new(&stack.sdk), "cache");
    let checkpoint = Checkpoint { next_token: "t-1".into(), pass_started_at: 42 };
    state.save_checkpoint(Some(&checkpoint)).await.unwrap();
    assert_eq!(state.checkpoint().await.unwrap(), Some(checkpoint));
    state.save_checkpoint(None).await.unwrap();
    assert_eq!(state.checkpoint().await.unwrap(), None);
}

/// `enricher-admin warm --all` on 500 accounts under 120 OUs (`WARM_TEST_ACCOUNTS` sets how
/// many, for the 5,000-account figure): names and paths from walking the tree (a page of
/// accounts and a page of OUs per parent), then tags per account; about 1.5 Organizations
/// calls per account against the 3 or more of an account looked up on its own, measured here
/// on the same organization.
#[tokio::test]
async fn warming_the_whole_organization_walks_the_ou_tree() {
    if !crate::stack_up() {
        return;
    }
    let stack = Stack::new().await;
    let accounts: usize = std::env::var("WARM_TEST_ACCOUNTS").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    let org = stack.seed(OrgSpec { accounts, depth: 4, fanout: 3, seed: 12 }).await;
    stack.create_cache_table("cache").await;
    let contact_role = format!("arn:aws:iam::{}:role/contacts", org.management_account);
    let config = stack.config("cache", &[("CONTACT_ROLE_ARN", contact_role)]);
    let calls = ApiCalls::default();
    let clients = Clients::for_enricher("enricher-admin", &config, &stack.sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let started = std::time::Instant::now();
    let report = enricher
        .directory
        // As `warm --all --max-seconds 900` would: 5,000 accounts through moto take minutes.
        .warm(
            &organizations_source(&config, &clients),
            WarmScope::Everything,
            Instant::now() + Duration::from_secs(900),
        )
        .await
        .unwrap();
    let warm_seconds = started.elapsed().as_secs_f64();
    let accounts = org.accounts.len() + 1; // and the management account
    assert_eq!((report.accounts, report.cached, report.failed), (accounts, accounts, 0), "{report:?}");
    let parents = 1 + org.ou_count as u64;
    let pages = |op: &str| calls.calls("Organizations", op);
    assert!(pages("ListAccountsForParent") >= parents, "every parent listed");
    assert!(pages("ListOrganizationalUnitsForParent") >= parents);
    assert_eq!(pages("ListTagsForResource"), accounts as u64, "tags stay per account");
    assert_eq!(pages("DescribeAccount") + pages("ListParents") + pages("DescribeOrganizationalUnit"), 0);
    // moto returns no Account.Paths: one ListAccounts page finds that out, then the tree walk.
    assert_eq!(pages("ListAccounts"), 1, "one page to learn that Paths are missing");
    let organizations: u64 =
        calls.snapshot().iter().filter(|((s, _), _)| s == "Organizations").map(|(_, c)| c.calls).sum();
    let per_account = organizations as f64 / accounts as f64;
    eprintln!(
        "warm --all: {organizations} Organizations calls for {accounts} accounts ({per_account:.2} per account, {warm_seconds:.1} s at ORGANIZATIONS_RPS={})",
        config.organizations_rate.per_second
    );
    let by_operation: Vec<String> = calls
        .snapshot()
        .iter()
        .filter(|((s, _), _)| s == "Organizations")
        .map(|((_, op), c)| format!("{op} {}", c.calls))
        .collect();
    eprintln!("  by operation: {}", by_operation.join(", "));
    // Where Organizations returns Account.Paths (not moto), the walk is ListRoots, ListAccounts
    // (20 a page) and one DescribeOrganizationalUnit per OU, then the same tags per account;
    // the adapter's aws-smithy-mocks tests count those calls on a small organization.
    let with_paths = 1 + accounts.div_ceil(20) as u64 + org.ou_count as u64 + pages("ListTagsForResource");
    eprintln!(
        "  with Account.Paths (the adapter's model, not measured here): {with_paths} calls ({:.2} per account)",
        with_paths as f64 / accounts as f64
    );
    assert!(per_account < 2.0, "{per_account}");

    // The same accounts looked up one by one, as the stream does on a cold cache: a table of
    // its own, so nothing is cached.
    stack.create_cache_table("cold-cache").await;
    let cold_config = stack.config(
        "cold-cache",
        &[("CONTACT_ROLE_ARN", format!("arn:aws:iam::{}:role/contacts", org.management_account))],
    );
    let cold_calls = ApiCalls::default();
    let cold_clients = Clients::for_enricher("enricher", &cold_config, &stack.sdk, &cold_calls).await;
    let sample: Vec<String> = org.accounts.iter().take(50).map(|a| a.id.clone()).collect();
    let (_, stats) = Enricher::from_clients(&cold_config, &cold_clients).directory.prefetch(&sample, later()).await;
    assert_eq!(stats.lookups, sample.len());
    let one_by_one: u64 =
        cold_calls.snapshot().iter().filter(|((s, _), _)| s == "Organizations").map(|(_, c)| c.calls).sum();
    let before = one_by_one as f64 / sample.len() as f64;
    eprintln!(
        "looked up one by one: {one_by_one} Organizations calls for {} accounts ({before:.2} per account)",
        sample.len()
    );
    assert!(before > per_account, "the walk is the cheaper way: {before} vs {per_account}");

    // The walked metadata is what a lookup would have found, and the stream's next batch finds
    // it in the table.
    let fresh = Enricher::from_clients(&config, &clients);
    let ids: Vec<String> = org.accounts.iter().map(|a| a.id.clone()).collect();
    let (resolved, stats) = fresh.directory.prefetch(&ids, later()).await;
    assert_eq!(stats.store_hits, ids.len());
    for seeded in &org.accounts {
        let Some(AccountRecord::Found(meta)) = resolved[&seeded.id].record() else { panic!("{}", seeded.id) };
        assert_eq!(meta.name.as_deref(), Some(seeded.name.as_str()));
        assert_eq!(meta.ou_path.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), seeded.ou_path);
        assert_eq!(meta.tags, seeded.tags);
    }
}
