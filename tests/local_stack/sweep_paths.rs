//! The sweep as an operator and the refresher run it, on the local stack at the settings a
//! deployment uses (Organizations at 1 call/s, burst 5): a cold organization's findings on both
//! hubs, from before the stream, all complete within 1.5 × the Organizations bound + 30 s,
//! routed by ROUTING_POLICY and published; then an account moved to another OU is rewritten on
//! both hubs, and no other account is.

use std::collections::HashMap;
use std::time::Duration;

use loadtest::local::events::EventTap;
use loadtest::local::findings::{
    import_findings, sample_finding, sample_ocsf_finding, seed_ocsf_findings, stored_ocsf_findings,
};
use loadtest::local::org::{OrgSpec, seed_organization};
use loadtest::local::{create_table, sdk_config_for};
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::config::{EnricherConfig, Vars};
use securityhub_enricher::core::posture::Grouping;
use securityhub_enricher::core::time::now_epoch_seconds;
use securityhub_enricher::service::posture_report;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::wiring::{Clients, posture_store};
use serde_json::{Value, json};
use tokio::time::Instant;

const ACCOUNTS: usize = 30;
const CSPM_FINDINGS: usize = 350;
const OCSF_FINDINGS: usize = 150;

#[tokio::test]
async fn the_operators_sweep_completes_a_cold_organization_on_both_hubs_and_an_ou_move_reaches_only_its_account() {
    if !crate::stack_up() {
        return;
    }
    // The fault scenarios inject 500s on every account's Security Hub calls: not meanwhile.
    let _turn = crate::faults::PROXIES.lock().await;
    let account = format!("{:012}", rand::random_range(100_000_000_000u64..999_999_999_999));
    let sdk = sdk_config_for(&account).await.expect("assume a role in the test's account");
    let organizations = aws_sdk_organizations::Client::new(&sdk);
    let org = seed_organization(
        &organizations,
        &aws_sdk_account::Client::new(&sdk),
        &OrgSpec { accounts: ACCOUNTS, depth: 2, fanout: 2, seed: 23 },
    )
    .await
    .unwrap();
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), "cache", "AccountId").await.unwrap();
    let bus = format!("enriched-{account}");
    let tap = EventTap::create(&sdk, &bus, &format!("all-{account}"), &json!({"source": ["securityhub-enricher"]}))
        .await
        .unwrap();
    let policy = json!({"rules": [{"ou_path_prefix": "Root", "set": {"owner": "platform", "environment": "prod"}}]});
    // Nothing but what a deployment sets: every rate and budget at its default.
    let vars: HashMap<String, String> = HashMap::from([
        ("CACHE_TABLE".into(), "cache".into()),
        ("ROUTING_POLICY".into(), policy.to_string()),
        ("ENRICHED_EVENTS_BUS".into(), bus.clone()),
    ]);
    let config = EnricherConfig::from_vars(&Vars(move |name: &str| vars.get(name).cloned())).unwrap();
    assert_eq!(config.organizations_rate.per_second, 1.0, "the default Organizations budget");

    // Findings from before the deployment, on both hubs: none has been through the stream.
    let cspm: Vec<Value> = (0..CSPM_FINDINGS)
        .map(|n| sample_finding(&org.accounts[n % ACCOUNTS].id, &org.accounts[n % ACCOUNTS].name, n))
        .collect();
    import_findings(&aws_sdk_securityhub::Client::new(&sdk), &cspm).await.unwrap();
    let ocsf: Vec<Value> = (0..OCSF_FINDINGS).map(|n| sample_ocsf_finding(&org.accounts[n % ACCOUNTS].id, n)).collect();
    seed_ocsf_findings(&account, &ocsf).await.unwrap();

    let calls = ApiCalls::default();
    let clients = Clients::for_enricher("enricher-admin", &config, &sdk, &calls).await;
    let refresher = Refresher::from_clients(&config, &clients);
    let started = Instant::now();
    let run = refresher.complete(&[], Instant::now() + Duration::from_secs(600), &|_| {}).await;
    let elapsed = started.elapsed().as_secs_f64();
    let sweep = &run.sweep;
    assert!(sweep.balances(), "{sweep:?}");
    let organizations_calls: u64 =
        calls.snapshot().iter().filter(|((service, _), _)| service == "Organizations").map(|(_, c)| c.calls).sum();
    // The fewest seconds any sweep could take: the Organizations calls it needs at 1 call/s.
    let bound = organizations_calls as f64 / config.organizations_rate.per_second;
    println!(
        "operator's sweep, cold: {} accounts, {} findings ({} OCSF), complete in {elapsed:.0} s against the Organizations bound {bound:.0} s ({organizations_calls} calls at 1/s); passes {}, BatchUpdateFindings {} (bound {}), BatchUpdateFindingsV2 {} (bound {}), events {}",
        ACCOUNTS,
        CSPM_FINDINGS + OCSF_FINDINGS,
        OCSF_FINDINGS,
        1 + run.extra_passes,
        sweep.writes.updates.findings_per_call.len(),
        sweep.writes.minimum_calls,
        sweep.writes.updates_v2.findings_per_call.len(),
        sweep.writes.minimum_calls_v2,
        sweep.writes.events.published,
    );
    assert_eq!(sweep.enriched_complete, CSPM_FINDINGS + OCSF_FINDINGS, "{sweep:?}");
    assert!(elapsed <= 1.5 * bound + 30.0, "{elapsed:.0} s against a bound of {bound:.0} s");

    // The pass's posture counts, kept in the cache table: `enricher-admin report` reads them
    // with two GetItems and no Security Hub request; every finding is the routing's owner's.
    let report_calls = ApiCalls::default();
    let report_clients = Clients::for_enricher("enricher-admin", &config, &sdk, &report_calls).await;
    let snapshot = posture_report::load(&posture_store(&config, &report_clients)).await.unwrap();
    let made: Vec<((String, String), u64)> =
        report_calls.snapshot().into_iter().filter(|(_, c)| c.calls > 0).map(|(k, c)| (k, c.calls)).collect();
    assert_eq!(made, [(("DynamoDB".to_owned(), "GetItem".to_owned()), 2)]);
    let pass = snapshot.last.as_ref().expect("the completed pass's counts");
    assert!(snapshot.running.is_none(), "the operator's sweep leaves no running pass");
    let counts = &pass.counts;
    assert_eq!((counts.total, counts.complete), ((CSPM_FINDINGS + OCSF_FINDINGS) as u64, counts.total), "{counts:?}");
    let owners: Vec<&str> = counts.by_owner.keys().map(String::as_str).collect();
    assert_eq!(owners, ["platform"], "the owner the findings carry");
    let platform = &counts.by_owner["platform"];
    // CSPM: n % 3 = 2 critical, 0 high; the OCSF samples are all High (severity_id 4).
    let cspm_of = |r: usize| (0..CSPM_FINDINGS).filter(|n| n % 3 == r).count() as u64;
    assert_eq!((platform.critical, platform.high), (cspm_of(2), cspm_of(0) + OCSF_FINDINGS as u64));
    assert_eq!(counts.by_environment["prod"].total(), counts.total);
    let report = posture_report::report(&snapshot, Grouping::Ou, Some(1), now_epoch_seconds());
    assert_eq!(report.rows.iter().map(|r| (r.group.as_str(), r.total)).collect::<Vec<_>>(), [("Root", counts.total)]);
    print!(
        "{}",
        posture_report::table(
            &posture_report::report(&snapshot, Grouping::Owner, None, now_epoch_seconds()),
            now_epoch_seconds()
        )
    );

    // Every finding of both hubs complete and routed; one event per finding written.
    let hub = aws_sdk_securityhub::Client::new(&sdk);
    let stored = all_cspm(&hub).await;
    assert_eq!(stored.len(), CSPM_FINDINGS);
    for f in &stored {
        let fields = f.user_defined_fields.as_ref().unwrap();
        assert_eq!(fields["findingEnriched"], "True", "{fields:?}");
        assert_eq!(fields["owner"], "platform");
    }
    let comments = stored_ocsf_findings(&account).await.unwrap();
    assert_eq!(comments.len(), OCSF_FINDINGS);
    assert!(comments.iter().all(|f| f["comment"].as_str().unwrap().starts_with("[securityhub-enricher] Account ")));
    let events = tap.received().await.unwrap();
    assert_eq!(events.len(), CSPM_FINDINGS + OCSF_FINDINGS, "every finding the sweep wrote, published once");
    assert!(
        events
            .iter()
            .all(|e| e["detail"]["routing"]["owner"] == "platform" && e["detail"]["account"]["partial"] == false)
    );

    // An account moves to the root: account-events forgets it and queues it (as here); the next
    // refresher run rewrites its findings on both hubs, and nobody else's.
    let moved = &org.accounts[7];
    let parent =
        organizations.list_parents().child_id(&moved.id).send().await.unwrap().parents.unwrap()[0].id.clone().unwrap();
    assert_ne!(parent, org.root_id, "the seeded account sits in an OU");
    organizations
        .move_account()
        .account_id(&moved.id)
        .source_parent_id(&parent)
        .destination_parent_id(&org.root_id)
        .send()
        .await
        .unwrap();
    // The scheduled refresher (its own role) takes the queue, not the operator.
    let calls = ApiCalls::default();
    let refresher_clients = Clients::for_enricher("refresher", &config, &sdk, &calls).await;
    let refresher = Refresher::from_clients(&config, &refresher_clients);
    refresher.sweeper.directory.invalidate(std::slice::from_ref(&moved.id)).await.unwrap();
    refresher.state.enqueue(std::slice::from_ref(&moved.id)).await.unwrap();
    let ocsf_before: HashMap<String, String> = comments
        .iter()
        .map(|f| (f["metadata"]["uid"].as_str().unwrap().to_owned(), f["comment"].as_str().unwrap().to_owned()))
        .collect();
    let cspm_before: HashMap<String, HashMap<String, String>> =
        stored.iter().map(|f| (f.id.clone().unwrap(), f.user_defined_fields.clone().unwrap())).collect();
    let writes_before = calls.calls("SecurityHub", "BatchUpdateFindings");
    let queued = refresher.run(Instant::now() + Duration::from_secs(300), &|_| {}).await;
    assert_eq!(queued.accounts, vec![moved.id.clone()], "{queued:?}");
    let of_moved = cspm.iter().filter(|f| f["AwsAccountId"] == moved.id.as_str()).count()
        + ocsf.iter().filter(|f| f["cloud"]["account"]["uid"] == moved.id.as_str()).count();
    assert_eq!((queued.sweep.examined, queued.sweep.enriched_complete), (of_moved, of_moved), "{:?}", queued.sweep);
    assert_eq!(calls.calls("SecurityHub", "BatchUpdateFindings"), writes_before + 1, "one request for the account");
    for f in all_cspm(&hub).await {
        let fields = f.user_defined_fields.unwrap();
        let before = &cspm_before[f.id.as_deref().unwrap()];
        if f.aws_account_id.as_deref() == Some(moved.id.as_str()) {
            assert_eq!((fields["OUPath"].as_str(), fields["OU"].as_str()), ("Root", "ROOT"), "{fields:?}");
            assert_ne!(fields["enrichedFrom"], before["enrichedFrom"]);
        } else {
            assert_eq!(&fields, before, "no other account's findings change");
        }
    }
    for f in stored_ocsf_findings(&account).await.unwrap() {
        let (uid, comment) = (f["metadata"]["uid"].as_str().unwrap(), f["comment"].as_str().unwrap());
        if f["cloud"]["account"]["uid"] == moved.id.as_str() {
            assert_ne!(comment, ocsf_before[uid], "the moved account's comment is rewritten");
            assert!(!comment.contains(&moved.ou_path[1..].join("/")), "{comment}");
        } else {
            assert_eq!(comment, ocsf_before[uid], "no other account's comment changes");
        }
    }
    assert_eq!(tap.received().await.unwrap().len(), of_moved, "the moved account's findings published again");

    // Ten accounts queued at once, none cached (as after a stream batch deferred them): their
    // lookups take about 40 s at 1 call/s, far past the stream's LOOKUP_BUDGET_SECONDS (5); the
    // refresher waits for them until its own deadline and leaves nothing Partial.
    let mut queued_accounts: Vec<String> = org.accounts[..10].iter().map(|a| a.id.clone()).collect();
    queued_accounts.sort();
    refresher.sweeper.directory.invalidate(&queued_accounts).await.unwrap();
    refresher.state.enqueue(&queued_accounts).await.unwrap();
    let run = refresher.run(Instant::now() + Duration::from_secs(300), &|_| {}).await;
    assert_eq!(run.accounts, queued_accounts, "{run:?}");
    assert_eq!(run.sweep.still_partial, 0, "looked up within the run, not the stream's budget: {:?}", run.sweep);
    assert!(run.sweep.examined > 0 && run.sweep.balances(), "{:?}", run.sweep);
    assert!(all_cspm(&hub).await.iter().all(|f| f.user_defined_fields.as_ref().unwrap()["findingEnriched"] == "True"));
}

async fn all_cspm(client: &aws_sdk_securityhub::Client) -> Vec<aws_sdk_securityhub::types::AwsSecurityFinding> {
    let mut all = Vec::new();
    let mut pages = client.get_findings().max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        all.extend(page.unwrap().findings.unwrap_or_default());
    }
    all
}
