//! Shared by integration tests: an enricher wired to in-memory stand-ins for one account, and
//! the records and findings fed to it.

use std::sync::Arc;
use std::time::Duration;

use loadtest::fakes::directory::StaticSource;
use loadtest::fakes::enricher::EnricherBuilder;
use loadtest::fakes::hub::InMemoryHub;
use securityhub_enricher::core::account::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
use securityhub_enricher::core::cache_entry::CacheTimes;
use securityhub_enricher::core::rate::Rate;
use securityhub_enricher::service::handler::Enricher;
use serde_json::{Value, json};

/// The account the in-memory organization holds.
pub const A: &str = "111122223333";

/// Account `A` with one tag and a security contact whose details must never reach the logs.
pub fn account_with_contact() -> AccountRecord {
    AccountRecord::Found(AccountMetadata {
        state: None,
        account_id: A.into(),
        name: Some("prod".into()),
        ou_path: vec![OrgUnit { id: "r-1".into(), name: "Root".into() }],
        tags: std::collections::BTreeMap::from([("Owner".into(), "x".into())]),
        security_contact: ContactLookup::Found(Contact {
            name: "Jane Secret".into(),
            title: "CISO".into(),
            email: "jane.secret@example.com".into(),
            phone: "+1-555-0199".into(),
        }),
    })
}

/// A record's `data`: the event as Kinesis carries it.
pub fn encode(event: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(event).unwrap())
}

/// A "Findings - Imported" event carrying `findings`.
pub fn event(findings: Value) -> Value {
    json!({"source": "aws.securityhub", "detail-type": "Security Hub Findings - Imported", "detail": {"findings": findings}})
}

/// A minimal GuardDuty finding of account `A`.
pub fn finding(id: &str) -> Value {
    json!({"Id": id, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty", "AwsAccountId": A, "UpdatedAt": "2026-11-22T07:00:00Z"})
}

/// An enricher whose organization holds `account`, writing to the returned in-memory hub.
pub fn in_memory_enricher(account: AccountRecord, rate: Rate) -> (Enricher, Arc<InMemoryHub>) {
    let minute = Duration::from_secs(60);
    let times = CacheTimes {
        fresh: minute,
        negative: minute,
        unknown_contact: minute,
        stale_grace: minute,
        memory: minute,
        memory_capacity: 100,
    };
    let hub = Arc::new(InMemoryHub::default());
    let enricher = EnricherBuilder::new()
        .source(Arc::new(StaticSource::new([account])))
        .cache_times(times)
        .lookups(4, Duration::from_secs(5))
        .hub(hub.clone())
        .rate(rate)
        .deadline_margin(Duration::from_millis(10))
        .build();
    (enricher, hub)
}
