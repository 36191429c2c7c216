//! `make demo`: the enricher end to end on the local AWS stack (run under scripts/local-aws).
//! Seeds an organization, imports findings (some before any stream), streams them through
//! Kinesis in Pipe-shaped batches into the real handler at a deployment's settings, completes
//! and refreshes them with the refresher, re-tags an account, runs investigations, and prints
//! what happened; last, one OCSF finding of the new Security Hub enriched and its routed
//! "Finding Enriched" event.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use loadtest::batches::{after_response, failed_ids};
use loadtest::local::events::EventTap;
use loadtest::local::findings::{
    import_findings, imported_event, imported_v2_event, sample_finding, sample_ocsf_finding, seed_ocsf_findings,
    stored_ocsf_findings,
};
use loadtest::local::org::{OrgSpec, SeededOrg, seed_organization};
use loadtest::local::pipe::LocalPipe;
use loadtest::local::settings::LocalSettings;
use loadtest::local::{control_request, create_table, sdk_config_for};
use securityhub_enricher::adapters::sdk::ApiCalls;
use securityhub_enricher::config::{AccountEventsConfig, EnricherConfig};
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::posture::Grouping;
use securityhub_enricher::core::quotas;
use securityhub_enricher::core::time::{now_epoch_seconds, since_epoch};
use securityhub_enricher::limits::Limiter;
use securityhub_enricher::ports::pending::StoreUsage;
use securityhub_enricher::service::account_events::forget_changed;
use securityhub_enricher::service::batch_report::BatchReport;
use securityhub_enricher::service::fanout::FanoutStats;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::service::investigator::Investigator;
use securityhub_enricher::service::posture_report;
use securityhub_enricher::service::refresh::{RefreshReport, Refresher};
use securityhub_enricher::service::sweep::SweepReport;
use securityhub_enricher::telemetry::CallCounts;
use securityhub_enricher::wiring::{Clients, account_events_tables, posture_store};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Run the enricher end to end on the local AWS stack")]
struct Args {
    /// Accounts in the seeded organization.
    #[arg(long, default_value_t = 40)]
    accounts: usize,
    /// Findings per wave (two waves: cold cache, then warm).
    #[arg(long, default_value_t = 600)]
    findings: usize,
    /// Records per batch handed to the enricher (the Pipe's BatchSize).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Findings in the burst (a standard enabled in every account), after the two waves.
    #[arg(long, default_value_t = 4000)]
    burst: usize,
    /// The burst's arrival rate, findings per second: with the Pipe's 1-s batching window, each
    /// second's arrivals on a shard are one batch.
    #[arg(long, default_value_t = 400)]
    burst_rate: usize,
}

const ADMIN_ACCOUNT: &str = "111111111111";
const CACHE_TABLE: &str = "securityhub-enricher-cache";
const JOBS_TABLE: &str = "securityhub-enricher-jobs";
/// The wave-1 finding an analyst chooses the `investigate` custom action on (an Inspector one).
const EXPLICIT: usize = 2;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL is not set: run this through scripts/local-aws (make demo)")?;
    let sdk = sdk_config_for(ADMIN_ACCOUNT).await?;
    let calls = ApiCalls::default();

    println!("== Seeding the local organization ({} accounts)", args.accounts);
    let organizations = aws_sdk_organizations::Client::new(&sdk);
    let account = aws_sdk_account::Client::new(&sdk);
    let org =
        seed_organization(&organizations, &account, &OrgSpec { accounts: args.accounts, ..OrgSpec::default() }).await?;
    println!("   management account {}, {} OUs, {} accounts", org.management_account, org.ou_count, org.accounts.len());
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table(&dynamodb, CACHE_TABLE, "AccountId").await?;
    create_table(&dynamodb, JOBS_TABLE, "JobId").await?;

    // The settings a deployment uses: only the tables and the contact role are named; every rate
    // and budget is the code's default (Organizations 1 call/s, burst 5; lookups wait 5 s).
    let config = LocalSettings::deployment(CACHE_TABLE)
        .contact_role_in(&org.management_account)
        .set("JOBS_TABLE", JOBS_TABLE)
        .enricher()?;
    println!(
        "   deployment settings: Organizations {}/s (burst {}), lookup budget {:?} per batch",
        config.organizations_rate.per_second, config.organizations_rate.burst, config.lookup_budget
    );
    let clients = Clients::for_enricher("enricher", &config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let refresher_calls = ApiCalls::default();
    let refresher_clients = Clients::for_enricher("refresher", &config, &sdk, &refresher_calls).await;
    let refresher = Refresher::from_clients(&config, &refresher_clients);
    let securityhub = aws_sdk_securityhub::Client::new(&sdk);
    let pipe = LocalPipe::create(aws_sdk_kinesis::Client::new(&sdk), "securityhub-findings", 2).await?;

    println!("\n== Before the stream: 200 findings already in Security Hub, never sent to the enricher");
    let older: Vec<Value> = (0..200)
        .map(|n| {
            let a = &org.accounts[n % org.accounts.len()];
            sample_finding(&a.id, &a.name, 5_000_000 + n)
        })
        .collect();
    import_findings(&securityhub, &older).await?;

    let mut explicit: Option<Value> = None;
    let mut selected = FanoutStats::default();
    let stream_started = std::time::Instant::now();
    for (wave, label) in [(0, "cold cache"), (1, "warm cache")] {
        println!("\n== Wave {}: {} findings, {label}", wave + 1, args.findings);
        // Zipf-like: a few accounts produce most findings, as in real organizations.
        let mut findings = Vec::with_capacity(args.findings);
        for n in 0..args.findings {
            let rank = ((n * 7919 + wave * 31) % 1000) as f64 / 1000.0;
            let a = &org.accounts[((rank * rank * rank) * org.accounts.len() as f64) as usize % org.accounts.len()];
            findings.push(sample_finding(&a.id, &a.name, wave * 1_000_000 + n));
        }
        if wave == 0 {
            // The analyst's request: an Inspector finding that names a deployment role, which
            // only the custom action selects.
            let account = findings[EXPLICIT].clone();
            findings[EXPLICIT]["Resources"].as_array_mut().context("resources")?.push(json!({
                "Type": "AwsIamRole", "Id": format!("arn:aws:iam::{}:role/ci-deployer", account["AwsAccountId"].as_str().unwrap_or_default()),
                "Partition": "aws", "Region": "us-east-1"}));
            explicit = Some(findings[EXPLICIT].clone());
        }
        import_findings(&securityhub, &findings).await?;
        let mut events: Vec<Value> =
            findings.iter().enumerate().map(|(n, f)| imported_event(std::slice::from_ref(f), n)).collect();
        if wave == 0 {
            add_awkward_records(&mut events, &findings);
            // EventBridge delivers at least once: every GuardDuty event arrives twice.
            let again: Vec<_> =
                events.iter().filter(|e| e["detail"]["findings"][0]["ProductName"] == "guardduty").cloned().collect();
            println!("   {} GuardDuty events delivered twice", again.len());
            events.extend(again);
        }
        pipe.put_events(&events).await?;
        let stats = run_wave(&enricher, &pipe, &calls, args.batch_size).await?;
        selected.findings_selected += stats.findings_selected;
        selected.explicit_requests += stats.explicit_requests;
        selected.findings_joined += stats.findings_joined;
        if wave == 0 {
            count_enriched(&securityhub, "after the stream's first pass").await?;
            println!(
                "\n== Refresher run (on its schedule, every RefreshIntervalMinutes): warms the cache from a walk of the OU tree beside its passes over every active finding"
            );
            let before = refresher_calls.snapshot();
            let run = refresher.run(tokio::time::Instant::now() + Duration::from_secs(600), &|_| {}).await;
            if let Some(warm) = &run.warm {
                let walked: u64 = refresher_calls
                    .since(&before)
                    .iter()
                    .filter(|((s, _), _)| s == "Organizations" || s == "Account")
                    .map(|(_, c)| c.calls)
                    .sum();
                println!(
                    "   directory warmed from the OU tree: {} accounts ({} already cached, {} cached now, {} failed, {} not reached); {walked} Organizations and Account calls in the run ({:.2} per account) at 1 call/s",
                    warm.accounts,
                    warm.already_cached,
                    warm.cached,
                    warm.failed,
                    warm.not_reached,
                    walked as f64 / warm.accounts.max(1) as f64
                );
            }
            if let Some(error) = &run.warm_error {
                println!("   the walk failed ({error}); the sweep looked accounts up itself");
            }
            print_sweep(&run.sweep);
            count_enriched(&securityhub, "after the refresher").await?;
            // A run that took the refresh queue (the accounts the stream could not resolve) is
            // not a pass over every finding; the next scheduled run is, and counts posture.
            let pass = if run.accounts.is_empty() {
                run
            } else {
                println!(
                    "\n== The next refresher run: the pass over every active finding, counting posture as it goes"
                );
                let next = refresher.run(tokio::time::Instant::now() + Duration::from_secs(300), &|_| {}).await;
                print_sweep(&next.sweep);
                next
            };
            print_posture(&config, &refresher_clients, &pass).await?;
            println!(
                "   {:.0} s from the stream's first record to the refresher's last write (deployed, the first run comes up to one RefreshIntervalMinutes after the stream starts)",
                stream_started.elapsed().as_secs_f64()
            );
        }
    }
    run_burst(&org, &enricher, &refresher, &pipe, &securityhub, args.burst, args.burst_rate).await?;
    println!(
        "\n   investigations asked for: {} findings selected, {} of them explicit requests, {} joined another finding's job",
        selected.findings_selected, selected.explicit_requests, selected.findings_joined
    );

    // The behavior graph covers part of the organization, as one of at most 1,200 members
    // does in a large one: every fourth account is left out (never the explicit request's).
    let explicit = explicit.context("the explicit request")?;
    let explicit_account = explicit["AwsAccountId"].as_str().unwrap_or_default().to_owned();
    let members: Vec<&str> = org
        .accounts
        .iter()
        .enumerate()
        .filter(|(i, a)| i % 4 != 3 || a.id == explicit_account)
        .map(|(_, a)| a.id.as_str())
        .collect();
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").context("LOCAL_AWS_EMULATOR_URL is not set")?;
    let graph_request =
        json!({"account_id": ADMIN_ACCOUNT, "region": "us-east-1", "count": 1, "members": members}).to_string();
    control_request("POST", &format!("{emulator}/_emulator/detective/graphs"), Some(graph_request)).await?;
    println!("   behavior graph: {} of {} accounts are members", members.len(), org.accounts.len());
    retag_one_account(&sdk, &refresher, &org.accounts[0].id, &org.accounts[1].id, &securityhub).await?;
    run_investigations(&config, &clients, &calls).await?;
    show_explicit_request(&securityhub, &explicit).await?;
    show_enriched_finding(&securityhub).await?;
    show_new_hub_and_routing(&org, &sdk, &calls).await?;
    Ok(())
}

/// The new Security Hub and routing: one OCSF finding ("Findings Imported V2") enriched with a
/// BatchUpdateFindingsV2 comment, routed by ROUTING_POLICY, and its "Finding Enriched" event as
/// an owner's EventBridge rule delivers it.
async fn show_new_hub_and_routing(org: &SeededOrg, sdk: &aws_config::SdkConfig, calls: &ApiCalls) -> Result<()> {
    const BUS: &str = "securityhub-enricher-findings";
    let account = org.accounts.iter().max_by_key(|a| a.ou_path.len()).context("no accounts")?;
    let prefix = account.ou_path.join("/");
    let policy = json!({"rules": [
        {"ou_path_prefix": "Root", "set": {"owner": "platform", "environment": "prod"}},
        {"ou_path_prefix": prefix, "set": {"owner": "payments", "criticality": "high"}}
    ]})
    .to_string();
    println!(
        "
== The new Security Hub (OCSF) and routing"
    );
    println!("   ROUTING_POLICY = {policy}");
    let rule = json!({"source": ["securityhub-enricher"], "detail-type": ["Finding Enriched"],
                      "detail": {"routing": {"owner": ["payments"]}}});
    println!("   EventBridge rule on bus {BUS}: {rule} -> SQS queue payments-findings");
    let tap = EventTap::create(sdk, BUS, "payments-findings", &rule).await?;
    let config = LocalSettings::named()
        .set("CACHE_TABLE", CACHE_TABLE)
        .contact_role_in(&org.management_account)
        .set("ROUTING_POLICY", &policy)
        .set("ENRICHED_EVENTS_BUS", BUS)
        .enricher()?;
    let clients = Clients::for_enricher("enricher", &config, sdk, calls).await;
    let enricher = Enricher::from_clients(&config, &clients);

    let finding = sample_ocsf_finding(&account.id, 1);
    seed_ocsf_findings(ADMIN_ACCOUNT, std::slice::from_ref(&finding)).await?;
    let pipe = LocalPipe::create(aws_sdk_kinesis::Client::new(sdk), "securityhub-findings-v2", 1).await?;
    pipe.put_events(&[imported_v2_event(&finding, 1)]).await?;
    for batch in pipe.read_batches(10).await? {
        let incoming: IncomingBatch = serde_json::from_value(Value::Array(batch))?;
        let report = enricher.handle(incoming, tokio::time::Instant::now() + Duration::from_secs(60)).await;
        println!(
            "   batch: {}; {} BatchUpdateFindingsV2, {} PutEvents ({} published)",
            report.tally, report.writes.updates_v2.calls, report.writes.events.calls, report.writes.events.published
        );
    }
    let uid = finding["metadata"]["uid"].as_str().unwrap_or_default();
    let stored = stored_ocsf_findings(ADMIN_ACCOUNT).await?;
    let enriched = stored.iter().find(|f| f["metadata"]["uid"] == uid).context("the OCSF finding is gone")?;
    println!("   OCSF finding {uid} of account {} ({prefix}):", account.id);
    println!("   comment: {}", enriched["comment"].as_str().unwrap_or("(none)"));
    let routed = tap.received().await?;
    println!("   the payments rule delivered {} event(s):", routed.len());
    for event in &routed {
        println!("   {}", serde_json::to_string_pretty(&event["detail"])?.replace('\n', "\n   "));
    }
    if routed.is_empty() {
        bail!("the routed event did not arrive");
    }
    Ok(())
}

/// Findings of the hub that carry complete enrichment, and those left Partial or never enriched.
async fn count_enriched(securityhub: &aws_sdk_securityhub::Client, when: &str) -> Result<()> {
    let (mut complete, mut partial, mut never) = (0, 0, 0);
    // GetFindings' quota (3 requests/s), as the sweep keeps it: thousands of findings are
    // dozens of pages.
    let limit = Limiter::new(quotas::SWEEP_GET_FINDINGS);
    let mut pages = securityhub.get_findings().max_results(100).into_paginator().send();
    loop {
        limit.acquire(tokio::time::Instant::now() + Duration::from_secs(60)).await?;
        let Some(page) = pages.next().await else { break };
        for f in page?.findings.unwrap_or_default() {
            match f.user_defined_fields.unwrap_or_default().get("findingEnriched").map(String::as_str) {
                Some("True") => complete += 1,
                Some(_) => partial += 1,
                None => never += 1,
            }
        }
    }
    println!("   Security Hub {when}: {complete} complete, {partial} Partial, {never} never enriched");
    Ok(())
}

fn print_sweep(r: &SweepReport) {
    println!(
        "   findings examined {} = current {} + enriched {} + still partial {} + skipped {} + failed {}; {} GetFindings; {} BatchUpdateFindings (bound {})",
        r.examined,
        r.current,
        r.enriched_complete,
        r.still_partial,
        r.skipped.values().sum::<usize>(),
        r.failed.values().sum::<usize>(),
        r.get_findings_calls,
        r.writes.updates.findings_per_call.len(),
        r.writes.minimum_calls
    );
}

/// An account is re-tagged in Organizations; account-events forgets it and queues it; the next
/// refresher run rewrites that account's findings and no other's.
async fn retag_one_account(
    sdk: &aws_config::SdkConfig,
    refresher: &Refresher,
    changed: &str,
    other: &str,
    securityhub: &aws_sdk_securityhub::Client,
) -> Result<()> {
    println!("\n== Account {changed} is re-tagged (Environment = quarantine)");
    aws_sdk_organizations::Client::new(sdk)
        .tag_resource()
        .resource_id(changed)
        .tags(aws_sdk_organizations::types::Tag::builder().key("Environment").value("quarantine").build()?)
        .send()
        .await?;
    let event = json!({
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.organizations", "account": ADMIN_ACCOUNT,
        "detail": {"eventSource": "organizations.amazonaws.com", "eventName": "TagResource",
                   "requestParameters": {"resourceId": changed}},
    });
    let (store, queue) = account_events_tables(&AccountEventsConfig { cache_table: CACHE_TABLE.into() }, sdk);
    let change = forget_changed(&store, &queue, &event).await?;
    println!("   account-events: {change:?} (cache entry forgotten, account queued for refresh)");
    // The refresher's environment drops its in-memory copy too (deployed: after MEMORY_CACHE_SECONDS).
    refresher.sweeper.directory.invalidate(&[changed.to_owned()]).await?;
    let run = refresher.run(tokio::time::Instant::now() + Duration::from_secs(600), &|_| {}).await;
    println!("   refresher run for the queued accounts {:?}:", run.accounts);
    print_sweep(&run.sweep);
    println!("   Environment on {changed}'s findings now: {:?}", environments(securityhub, changed).await?);
    println!("   Environment on {other}'s findings (untouched): {:?}", environments(securityhub, other).await?);
    Ok(())
}

/// The distinct `Environment` values on one account's findings.
async fn environments(
    securityhub: &aws_sdk_securityhub::Client,
    account: &str,
) -> Result<std::collections::BTreeSet<String>> {
    use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, StringFilter, StringFilterComparison};
    let filter = AwsSecurityFindingFilters::builder()
        .aws_account_id(StringFilter::builder().value(account).comparison(StringFilterComparison::Equals).build())
        .build();
    let mut values = std::collections::BTreeSet::new();
    let mut pages = securityhub.get_findings().filters(filter).max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        for f in page?.findings.unwrap_or_default() {
            if let Some(v) = f.user_defined_fields.unwrap_or_default().get("Environment") {
                values.insert(v.clone());
            }
        }
    }
    Ok(values)
}

/// The investigator, as its schedule would run it: one pass at a time, never waiting on Detective.
async fn run_investigations(config: &EnricherConfig, clients: &Clients, calls: &ApiCalls) -> Result<()> {
    let settings = LocalSettings::named()
        .set("JOBS_TABLE", JOBS_TABLE)
        .set("CACHE_TABLE", &config.cache_table)
        .set("DETECTIVE_RPS", 1)
        .set("DETECTIVE_BURST", 5)
        .set("SECURITYHUB_RPS", 5);
    let investigator = Investigator::from_clients(&settings.investigator()?, clients, "us-east-1");
    println!(
        "\n== Investigations (investigator passes every 2 s here, every minute when deployed; Detective at 1 start/s)"
    );
    for pass in 1..=60 {
        let report = investigator.run_pass(tokio::time::Instant::now() + Duration::from_secs(60)).await;
        println!(
            "   pass {pass}: {} jobs active: {} started, {} waiting for quota, {} not covered, {} joined, {} still running, {} complete, {} failed, {} retried, {} not due, {} claims lost, {} errors; left waiting for: {}",
            report.active,
            report.started,
            report.waiting,
            report.not_covered,
            report.joined,
            report.still_running,
            report.completed,
            report.failed,
            report.retried,
            report.not_due,
            report.claims_lost,
            report.errors,
            report.waits_text()
        );
        if report.active == 0 {
            break;
        }
        // Jobs that wait on a clock further away than the passes go on (a retry's backoff,
        // a scope window) cannot finish in this run: say what they wait for and stop.
        let now = securityhub_enricher::core::time::now_epoch_seconds();
        if report.nothing_due_before(now + 30) {
            println!(
                "   stopped waiting: {} job(s) left, none can finish soon ({}; the earliest is due in {} s)",
                report.active,
                report.waits_text(),
                report.next_due_at.map_or(0, |at| at - now)
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let items = clients.dynamodb.scan().table_name(JOBS_TABLE).send().await?.items.unwrap_or_default();
    let status = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        item.get("Status").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    let findings_of = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        item.get("Findings").and_then(|v| v.as_ss().ok()).map_or(0, Vec::len)
    };
    let not_covered = items.iter().filter(|i| status(i) == "NOT_COVERED").count();
    let joined: Vec<usize> = items.iter().map(findings_of).filter(|&n| n > 1).collect();
    let emulator = std::env::var("LOCAL_AWS_EMULATOR_URL").context("LOCAL_AWS_EMULATOR_URL is not set")?;
    let dump =
        control_request("GET", &format!("{emulator}/_emulator/detective/investigations?account={ADMIN_ACCOUNT}"), None)
            .await?;
    let investigations: Vec<Value> = serde_json::from_str(&dump)?;
    let actors: std::collections::BTreeSet<&str> =
        investigations.iter().filter_map(|i| i["EntityArn"].as_str()).collect();
    println!(
        "   StartInvestigation calls {} against {} distinct actors; {} jobs: {} not covered (no call), {} joined by several findings ({} findings), ListMembers calls {}",
        calls.calls("Detective", "StartInvestigation"),
        actors.len(),
        items.len(),
        not_covered,
        joined.len(),
        joined.iter().sum::<usize>(),
        calls.calls("Detective", "ListMembers"),
    );
    Ok(())
}

/// The custom action's finding after the investigator: its request was honoured.
async fn show_explicit_request(securityhub: &aws_sdk_securityhub::Client, explicit: &Value) -> Result<()> {
    use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, StringFilter, StringFilterComparison};
    let id = explicit["Id"].as_str().unwrap_or_default();
    let filter = AwsSecurityFindingFilters::builder()
        .id(StringFilter::builder().value(id).comparison(StringFilterComparison::Equals).build())
        .build();
    let found = securityhub.get_findings().filters(filter).max_results(10).send().await?;
    let Some(finding) = found.findings.unwrap_or_default().into_iter().find(|f| f.id.as_deref() == Some(id)) else {
        bail!("the explicit request's finding {id} is not in Security Hub");
    };
    let fields: BTreeMap<String, String> = finding.user_defined_fields.unwrap_or_default().into_iter().collect();
    println!("\n== The explicit request (custom action `investigate`, delivered beside an Imported duplicate)");
    println!("   Id: {id}");
    println!("   investigate = {}", fields.get("investigate").map_or("(not set)", String::as_str));
    if let Some(note) = finding.note {
        println!("   Note: {}", note.text.unwrap_or_default());
    }
    Ok(())
}

/// What real streams carry besides clean findings: a duplicate, our own update coming back,
/// a custom action with several findings, the analyst's `investigate` custom action beside an
/// Imported duplicate, an event from another source, and garbage.
fn add_awkward_records(events: &mut Vec<Value>, findings: &[Value]) {
    let mut older = findings[0].clone();
    older["UpdatedAt"] = json!("2026-11-22T06:00:00.000Z");
    events.push(imported_event(&[older], 900_001));
    let mut enriched = findings[1].clone();
    enriched["UserDefinedFields"] = json!({"findingEnriched": "True"});
    events.push(imported_event(&[enriched], 900_002));
    let mut action = imported_event(&findings[2..5], 900_003);
    action["detail-type"] = json!("Security Hub Findings - Custom Action");
    action["detail"]["actionName"] = json!("enrich-again");
    events.push(action);
    // The analyst's custom action, then the same finding's Imported event again (a redelivery
    // with the same UpdatedAt): dedup keeps the later copy, and the request must survive it.
    let mut investigate = imported_event(&findings[EXPLICIT..=EXPLICIT], 900_004);
    investigate["detail-type"] = json!("Security Hub Findings - Custom Action");
    investigate["detail"]["actionName"] = json!("investigate");
    events.push(investigate);
    events.push(imported_event(&findings[EXPLICIT..=EXPLICIT], 900_005));
    events.push(json!({"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {}}));
    events.push(json!("not an EventBridge event"));
}

/// Runs one wave through the enricher; returns what its batches asked of the investigator.
async fn run_wave(enricher: &Enricher, pipe: &LocalPipe, calls: &ApiCalls, batch_size: usize) -> Result<FanoutStats> {
    let before = calls.snapshot();
    let emulator_before = emulator_stats().await?;
    let batches = pipe.read_batches(batch_size).await?;
    let mut reports: Vec<BatchReport> = Vec::new();
    for batch in &batches {
        let mut records = batch.clone();
        // As the Pipe does: from the first failed record on, delivered again (a few times here).
        for attempt in 0..3 {
            let incoming: IncomingBatch = serde_json::from_value(Value::Array(records.clone()))?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let report = enricher.handle(incoming, deadline).await;
            let failed = failed_ids(&report.response.batch_item_failures);
            println!(
                "   batch of {:>4} records (attempt {}): {}; {} BatchUpdateFindings (bound {}); accounts {} = memory {} + table {} + lookups {}",
                records.len(),
                attempt + 1,
                report.tally,
                report.writes.updates.calls,
                report.writes.minimum_calls,
                report.prefetch.accounts,
                report.prefetch.memory_hits,
                report.prefetch.store_hits,
                report.prefetch.lookups,
            );
            if !report.tally.balances() {
                bail!("batch tally does not balance: {}", report.tally);
            }
            reports.push(report);
            if failed.is_empty() {
                break;
            }
            records = after_response(records, &failed, |r| r["eventID"].as_str().unwrap_or_default().to_owned()).1;
        }
    }
    summarize(&reports, &calls.since(&before), &emulator_before, &emulator_stats().await?);
    let mut stats = FanoutStats::default();
    for r in &reports {
        stats.findings_selected += r.investigations.findings_selected;
        stats.explicit_requests += r.investigations.explicit_requests;
        stats.findings_joined += r.investigations.findings_joined;
    }
    Ok(stats)
}

/// A burst: a standard enabled in every account at once. Its findings arrive faster than
/// BatchUpdateFindings' quota writes them one small group per account and batch, so the
/// enricher holds each account's few findings of a batch in the pending-writes store and writes
/// them with that account's later ones, in requests of up to 100; the refresher's drain writes
/// what is left once the burst is over. Shows the requests against two bounds: each batch
/// written alone, and the whole burst grouped per account.
async fn run_burst(
    org: &SeededOrg,
    enricher: &Enricher,
    refresher: &Refresher,
    pipe: &LocalPipe,
    securityhub: &aws_sdk_securityhub::Client,
    findings: usize,
    rate: usize,
) -> Result<()> {
    if findings == 0 {
        return Ok(());
    }
    let accounts = org.accounts.len();
    println!(
        "\n== A burst: a standard enabled in every account, {findings} control findings over {accounts} accounts arriving at {rate}/s (the Pipe's 1-s window: one batch per shard and second)"
    );
    let burst: Vec<Value> = (0..findings)
        .map(|n| {
            // Larger accounts have more resources to evaluate (Zipf-like, as in the waves).
            let rank = ((n * 7919 + 17) % 1000) as f64 / 1000.0;
            let a = &org.accounts[((rank * rank * rank) * accounts as f64) as usize % accounts];
            // n % 3 == 1: a Security Hub control finding.
            sample_finding(&a.id, &a.name, 3 * (3_000_000 + n) + 1)
        })
        .collect();
    import_findings(securityhub, &burst).await?;
    // Findings an earlier wave left waiting (its writes queued for the quota) go out with the
    // burst's.
    let waiting_before: usize = match &enricher.pending {
        Some(coalescer) => coalescer.store.accounts().await?.iter().map(|a| a.findings).sum(),
        None => 0,
    };
    let mut per_account: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_batch_bound = 0;
    let mut reports: Vec<BatchReport> = Vec::new();
    let started = std::time::Instant::now();
    for (second, window) in burst.chunks(rate.max(1)).enumerate() {
        let mut in_window: BTreeMap<&str, usize> = BTreeMap::new();
        for f in window {
            let account = f["AwsAccountId"].as_str().unwrap_or_default();
            *in_window.entry(account).or_default() += 1;
            *per_account.entry(account).or_default() += 1;
        }
        // Each account's records share a shard (partition key = account), so each batch holds
        // all of its account's findings of that second.
        per_batch_bound += in_window.values().map(|n| n.div_ceil(100)).sum::<usize>();
        let events: Vec<Value> = window
            .iter()
            .enumerate()
            .map(|(k, f)| imported_event(std::slice::from_ref(f), 2_000_000 + second * rate + k))
            .collect();
        pipe.put_events(&events).await?;
        // The deployment's BatchSize: a second's arrivals are far below it.
        for batch in pipe.read_batches(10_000).await? {
            let incoming: IncomingBatch = serde_json::from_value(Value::Array(batch))?;
            let report = enricher.handle(incoming, tokio::time::Instant::now() + Duration::from_secs(60)).await;
            if !report.tally.balances() || !report.response.batch_item_failures.is_empty() {
                bail!("burst batch: {} ({} records to retry)", report.tally, report.response.batch_item_failures.len());
            }
            reports.push(report);
        }
    }
    let sum = |f: &dyn Fn(&BatchReport) -> usize| reports.iter().map(f).sum::<usize>();
    let stream_seconds = started.elapsed().as_secs_f64();
    println!(
        "   {} batches in {stream_seconds:.0} s: findings {} = enriched {} + held in the pending-writes store {} (+ skipped {}, failed {}, deferred {}); {} waiting findings written by the enricher's drains",
        reports.len(),
        sum(&|r| r.tally.findings_in),
        sum(&|r| r.tally.findings_enriched),
        sum(&|r| r.tally.findings_pending),
        sum(&|r| r.tally.findings_skipped.values().sum()),
        sum(&|r| r.tally.findings_failed.values().sum()),
        sum(&|r| r.tally.findings_deferred),
        sum(&|r| r.pending.drained.written),
    );
    // The burst is over: the refresher's next run (every minute) drains the rest beside its
    // sweeps, as soon as a second look finds nothing new held.
    let run = refresher.run(tokio::time::Instant::now() + Duration::from_secs(120), &|_| {}).await;
    println!(
        "   the refresher's next run drained {} waiting findings of {} accounts",
        run.pending.drained.written, run.pending.drained.accounts
    );
    let mut calls: Vec<usize> =
        reports.iter().flat_map(|r| r.writes.updates.findings_per_call.iter().copied()).collect();
    calls.extend(run.pending_writes.updates.findings_per_call.iter().copied());
    let full = calls.iter().filter(|&&n| n == 100).count();
    let workload_bound: usize = per_account.values().map(|n| n.div_ceil(100)).sum();
    println!(
        "   BatchUpdateFindings: {} accepted calls carrying {} findings ({findings} of the burst, {waiting_before} left waiting by the waves), {full} of them full (100 findings); without the store, each batch written alone: {per_batch_bound} calls; the burst grouped per account (workload bound): {workload_bound}",
        calls.len(),
        calls.iter().sum::<usize>(),
    );
    let mut store = StoreUsage::default();
    for usage in reports.iter().filter_map(|r| r.pending.store) {
        store += usage;
    }
    if let Some(drain) = run.pending.store {
        store += drain;
    }
    let per_million = |n: u64| n as f64 * 1_000_000.0 / findings as f64;
    println!(
        "   pending-writes store: {} DynamoDB requests, {} write units, {} read units ({:.2} write and {:.2} read units per finding; per million findings {:.0} and {:.0})",
        store.requests,
        store.write_units,
        store.read_units,
        store.write_units as f64 / findings as f64,
        store.read_units as f64 / findings as f64,
        per_million(store.write_units),
        per_million(store.read_units),
    );
    count_enriched(securityhub, "after the burst").await?;
    Ok(())
}

fn summarize(reports: &[BatchReport], calls: &CallCounts, hub_before: &Value, hub_after: &Value) {
    let sum = |f: &dyn Fn(&BatchReport) -> usize| reports.iter().map(f).sum::<usize>();
    let findings = sum(&|r| r.tally.findings_in);
    let enriched = sum(&|r| r.tally.findings_enriched);
    let updates = sum(&|r| r.writes.updates.calls);
    let bound = sum(&|r| r.writes.minimum_calls);
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        for (k, v) in &r.tally.findings_skipped {
            *skipped.entry(k.clone()).or_default() += v;
        }
    }
    println!(
        "   records {} (poison {}, skipped {}, failed {})",
        sum(&|r| r.tally.records_in),
        sum(&|r| r.tally.records_poison),
        sum(&|r| r.tally.records_skipped),
        sum(&|r| r.tally.records_failed)
    );
    let deferred = sum(&|r| r.tally.findings_deferred);
    let queued = sum(&|r| r.queued_for_refresh);
    let pending = sum(&|r| r.tally.findings_pending);
    println!(
        "   findings {findings}: enriched {enriched}, deferred to the refresher {deferred} ({queued} account(s) queued), held in the pending-writes store {pending}, skipped {skipped:?}"
    );
    let accepted = reports.iter().map(|r| r.writes.updates.findings_per_call.len()).sum::<usize>();
    let throttled = sum(&|r| r.writes.updates.throttled);
    println!(
        "   BatchUpdateFindings: {accepted} accepted calls against the Σ⌈n/100⌉ bound {bound} ({updates} sent, {throttled} throttled and retried)"
    );
    println!("   API calls by operation (per finding):");
    for ((service, operation), count) in calls {
        let per_finding = if findings > 0 { count.calls as f64 / findings as f64 } else { 0.0 };
        println!(
            "     {:<14} {:<28} {:>6} calls  {:>8.4}/finding  throttled {}",
            service, operation, count.calls, per_finding, count.throttled
        );
    }
    let count = |stats: &Value, op: &str| stats["calls"][op].as_u64().unwrap_or(0);
    let hub_updates = count(hub_after, "BatchUpdateFindings") - count(hub_before, "BatchUpdateFindings");
    println!("   Security Hub emulator saw {hub_updates} BatchUpdateFindings calls");
}

async fn emulator_stats() -> Result<Value> {
    let url = std::env::var("LOCAL_AWS_EMULATOR_URL").context("LOCAL_AWS_EMULATOR_URL is not set")?;
    let body = control_request("GET", &format!("{url}/_emulator/stats"), None).await?;
    Ok(serde_json::from_str(&body)?)
}

async fn show_enriched_finding(securityhub: &aws_sdk_securityhub::Client) -> Result<()> {
    use aws_sdk_securityhub::types::{AwsSecurityFindingFilters, MapFilter, MapFilterComparison};
    let filter = AwsSecurityFindingFilters::builder()
        .user_defined_fields(
            MapFilter::builder()
                .key("securityContact")
                .value("Name:")
                .comparison(MapFilterComparison::Contains)
                .build(),
        )
        .build();
    let found = securityhub.get_findings().filters(filter).max_results(1).send().await?;
    let Some(finding) = found.findings.unwrap_or_default().into_iter().next() else {
        bail!("no enriched finding with a security contact was found in Security Hub");
    };
    println!("\n== One enriched finding, as Security Hub now has it");
    println!("   Id: {}", finding.id.unwrap_or_default());
    if let Some(note) = finding.note {
        println!("   Note ({}): {}", note.updated_by.unwrap_or_default(), note.text.unwrap_or_default());
    }
    for (k, v) in finding.user_defined_fields.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>() {
        println!("   UserDefinedFields.{k} = {v}");
    }
    Ok(())
}

/// What `enricher-admin report` prints after the refresher's pass (read back from the cache
/// table, as the report reads it), and the pass's posture EMF documents.
async fn print_posture(config: &EnricherConfig, clients: &Clients, run: &RefreshReport) -> Result<()> {
    let snapshot = posture_report::load(&posture_store(config, clients)).await?;
    let now = now_epoch_seconds();
    let report = posture_report::report(&snapshot, Grouping::Owner, None, now);
    println!("\n== enricher-admin report (the pass's posture counts, from the cache table alone)");
    for line in posture_report::table(&report, now).lines() {
        println!("   {line}");
    }
    if run.posture.is_none() {
        println!(
            "   (the run kept no pass's counts: pass complete {}, idle {:?}, posture error {:?}, state error {:?})",
            run.pass_complete, run.idle, run.posture_error, run.state_error
        );
    }
    if let Some(pass) = &run.posture {
        let documents =
            securityhub_enricher::telemetry::posture_documents(pass, "refresher", since_epoch().as_millis() as u64);
        let bytes: usize = documents.iter().map(|d| d.len() + 1).sum();
        println!(
            "   published at the pass's end as {} EMF documents, {bytes} bytes (largest {} bytes)",
            documents.len(),
            documents.iter().map(String::len).max().unwrap_or(0)
        );
    }
    Ok(())
}
