//! The enriched-finding event (source `securityhub-enricher`, detail-type `Finding Enriched`)
//! published to `ENRICHED_EVENTS_BUS` for every enriched finding of either hub, so that owners
//! are reached with ordinary EventBridge rules. The detail is versioned (`schema_version`);
//! fields are only ever added within a version.

use serde::Serialize;

use crate::core::enrich::{AccountEnrichment, AccountSummary};
use crate::core::finding::{Finding, Hub};
use crate::core::routing::Routing;

pub const EVENT_SOURCE: &str = "securityhub-enricher";
pub const DETAIL_TYPE: &str = "Finding Enriched";
/// Bumped only when a field changes meaning or goes away.
pub const SCHEMA_VERSION: &str = "1";
/// PutEvents: at most 10 entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// PutEvents: at most 256 KB per entry, counted as AWS counts it (see `entry_size`).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// The `finding` object: enough to find and triage it, never the whole finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingPart {
    pub hub: Hub,
    /// ASFF `Id`, or OCSF `metadata.uid` (else `finding_info.uid`).
    pub id: String,
    /// ASFF `ProductArn`, or OCSF `metadata.product.uid`.
    pub product: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// OCSF only: `finding_info.uid`, with `cloud.account.uid` and the product the V2 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding_info_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The `account` object, with whether the account summary had to be cut to fit the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountPart {
    #[serde(flatten)]
    pub summary: AccountSummary,
    /// True when organization details were not known in time (enriched partially).
    pub partial: bool,
    /// True when the tags were left out to keep the entry within 256 KB.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tags_omitted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrichedDetail {
    pub schema_version: &'static str,
    pub finding: FindingPart,
    pub account: AccountPart,
    pub routing: Routing,
}

/// One PutEvents entry as the publisher hands it to the port (the bus is the adapter's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry {
    pub source: &'static str,
    pub detail_type: &'static str,
    pub detail: String,
}

/// An entry's size as PutEvents counts it: the UTF-8 bytes of Source, DetailType and Detail
/// (no Time or Resources are sent).
pub fn entry_size(entry: &EventEntry) -> usize {
    entry.source.len() + entry.detail_type.len() + entry.detail.len()
}

/// The event for an enriched finding; tags are dropped if the entry would exceed 256 KB, and
/// `None` comes back only if it still would (a title of a quarter megabyte), which the caller
/// counts as unpublishable.
pub fn event_for(finding: &Finding, enrichment: &AccountEnrichment) -> Option<EventEntry> {
    let ocsf = finding.ocsf.as_deref();
    let mut detail = EnrichedDetail {
        schema_version: SCHEMA_VERSION,
        finding: FindingPart {
            hub: finding.hub(),
            id: finding.id.clone(),
            product: finding.product_arn.clone(),
            product_name: finding.product_name.clone(),
            finding_info_uid: ocsf.and_then(|o| o.finding_info_uid.clone()),
            severity: finding.severity.as_ref().and_then(|s| s.label.clone()),
            title: finding.title.clone(),
        },
        account: AccountPart {
            summary: enrichment.summary.clone(),
            partial: enrichment.completeness == crate::core::enrich::Completeness::Partial,
            tags_omitted: false,
        },
        routing: enrichment.routing.clone(),
    };
    let entry = |detail: &EnrichedDetail| EventEntry {
        source: EVENT_SOURCE,
        detail_type: DETAIL_TYPE,
        detail: serde_json::to_string(detail).expect("the detail serializes"),
    };
    let first = entry(&detail);
    if entry_size(&first) <= MAX_ENTRY_BYTES {
        return Some(first);
    }
    detail.account.summary.tags.clear();
    detail.account.tags_omitted = true;
    Some(entry(&detail)).filter(|e| entry_size(e) <= MAX_ENTRY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::account::{AccountMetadata, AccountState, ContactLookup, OrgUnit};
    use crate::core::enrich::{Completeness, Rendering, TagFilter};
    use crate::core::routing::{RoutingPolicy, RoutingRules};
    use std::collections::BTreeMap;

    fn enrichment(tags: BTreeMap<String, String>) -> AccountEnrichment {
        let meta = AccountMetadata {
            state: Some(AccountState::Suspended),
            account_id: "111122223333".into(),
            name: Some("payments-prod".into()),
            ou_path: vec![
                OrgUnit { id: "r-1".into(), name: "Root".into() },
                OrgUnit { id: "ou-1".into(), name: "Prod".into() },
            ],
            tags,
            security_contact: ContactLookup::Found(crate::core::account::Contact {
                name: "Sec".into(),
                title: "CISO".into(),
                email: "sec@example.com".into(),
                phone: "1".into(),
            }),
        };
        let rules = RoutingRules {
            policy: RoutingPolicy::parse(r#"{"rules":[{"ou_path_prefix":"Root/Prod","set":{"owner":"payments"}}]}"#)
                .unwrap(),
            owner_tag_key: "owner".into(),
        };
        Rendering { tag_filter: TagFilter::All, routing: rules }.account(&meta, Completeness::Complete)
    }

    fn finding() -> Finding {
        serde_json::from_str(
            r#"{"Id":"f","ProductArn":"p","AwsAccountId":"111122223333","Title":"t","Severity":{"Label":"HIGH"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn detail_has_the_three_objects_and_no_contact_details() {
        let e = event_for(&finding(), &enrichment(BTreeMap::from([("team".into(), "blue".into())]))).unwrap();
        assert_eq!((e.source, e.detail_type), ("securityhub-enricher", "Finding Enriched"));
        let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(v["schema_version"], "1");
        assert_eq!(v["finding"]["hub"], "cspm");
        assert_eq!(v["finding"]["severity"], "HIGH");
        assert_eq!(v["account"]["ou_path"], "Root/Prod");
        assert_eq!(v["account"]["ou_id"], "ou-1");
        assert_eq!(v["account"]["tags"]["team"], "blue");
        assert_eq!(v["account"]["has_security_contact"], true);
        assert_eq!(v["account"]["state"], "SUSPENDED", "findings of a suspended account can be routed apart");
        assert_eq!(v["routing"]["owner"], "payments");
        assert!(!e.detail.contains("sec@example.com") && !e.detail.contains("CISO"));
    }

    /// The state is written to the finding too (`accountState`), for automation rules and insights.
    #[test]
    fn the_account_state_is_a_field_of_ours_on_the_finding() {
        let enrichment = enrichment(BTreeMap::new());
        let fields = enrichment.payload_with_note(&BTreeMap::new()).payload.fields;
        assert_eq!(fields.get(crate::core::fields::keys::ACCOUNT_STATE).map(String::as_str), Some("SUSPENDED"));
        // A value someone else wrote under our key is replaced, never kept beside ours.
        let foreign = enrichment.foreign_fields(&BTreeMap::from([("accountState".into(), "forged".into())]));
        assert!(!foreign.contains_key("accountState"), "{foreign:?}");
    }

    /// The README documents schema version 1 ("Enriched-finding events"): the same objects and
    /// fields as a fully populated V2 event (`tags_omitted` appears only when tags are cut).
    #[test]
    fn the_documented_schema_is_the_published_one() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## Enriched-finding events").unwrap()..];
        let start = section.find("```json\n").unwrap() + 8;
        let end = start + section[start..].find("```").unwrap();
        let documented: serde_json::Value = serde_json::from_str(&section[start..end]).unwrap();
        let v2 = crate::core::ocsf::decode(
            r#"{"metadata":{"uid":"m","product":{"uid":"p","name":"GuardDuty"}},"cloud":{"account":{"uid":"111122223333"}},
                "finding_info":{"uid":"f","title":"t"},"severity":"High"}"#,
        )
        .unwrap();
        let mut e = enrichment(BTreeMap::from([("team".into(), "payments".into())]));
        e.routing = Routing { owner: Some("o".into()), environment: Some("e".into()), criticality: Some("c".into()) };
        let published: serde_json::Value = serde_json::from_str(&event_for(&v2, &e).unwrap().detail).unwrap();
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&documented), keys(&published));
        for object in ["finding", "account", "routing"] {
            assert_eq!(keys(&documented[object]), keys(&published[object]), "{object}");
        }
        assert_eq!(documented["schema_version"], SCHEMA_VERSION);
    }

    #[test]
    fn an_oversized_entry_loses_its_tags_and_stays_within_the_limit() {
        let tags: BTreeMap<String, String> = (0..400).map(|i| (format!("k{i}"), "v".repeat(1000))).collect();
        let e = event_for(&finding(), &enrichment(tags)).unwrap();
        assert!(entry_size(&e) <= MAX_ENTRY_BYTES);
        let v: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(v["account"]["tags_omitted"], true);
    }
}
