//! The subset of an OCSF finding (the new Security Hub's "Findings Imported V2" events) that we
//! read, its identifiers for BatchUpdateFindingsV2, and its mapping onto the one `Finding` view
//! the rest of the pipeline (screen, dedup, outcomes, grouping by account) works on.
//!
//! Field names are OCSF's (snake case): `metadata.uid`, `metadata.product.uid`,
//! `cloud.account.uid`, `finding_info.uid`, `finding_info.modified_time` (epoch milliseconds),
//! `finding_info.modified_time_dt` (RFC 3339), `comment`, `severity`, `status`.

use serde::Deserialize;

use crate::core::finding::{OcsfFindingId, OcsfPart};

#[derive(Debug, Default, Deserialize)]
struct Product {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    product: Product,
}

#[derive(Debug, Default, Deserialize)]
struct Account {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Cloud {
    #[serde(default)]
    account: Account,
}

#[derive(Debug, Default, Deserialize)]
struct FindingInfo {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// OCSF `timestamp_t`: milliseconds since the epoch.
    #[serde(default)]
    modified_time: Option<i64>,
    #[serde(default)]
    modified_time_dt: Option<String>,
    #[serde(default)]
    created_time_dt: Option<String>,
    #[serde(default)]
    first_seen_time_dt: Option<String>,
}

/// An OCSF finding as far as enrichment reads it; unknown fields are skipped unallocated.
#[derive(Debug, Deserialize)]
pub struct OcsfFinding {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    cloud: Cloud,
    #[serde(default)]
    finding_info: FindingInfo,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    /// OCSF's `severity_id` (1 Informational … 5 Critical, 6 Fatal), when `severity` is absent.
    #[serde(default)]
    severity_id: Option<i64>,
    #[serde(default)]
    status: Option<String>,
    /// Top-level event time: the last resort for "latest modification wins".
    #[serde(default)]
    time: Option<i64>,
}

/// Why an OCSF finding cannot be enriched: it is a counted skip, never a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcsfError {
    #[error("OCSF finding has neither metadata.uid nor cloud.account.uid + finding_info.uid + metadata.product.uid")]
    NoIdentifier,
    #[error("OCSF finding has no cloud.account.uid")]
    NoAccount,
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn millis_to_rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl OcsfFinding {
    /// The shared view of this finding: identifiers, account, modification time, product and
    /// severity where the ASFF path keeps them, and the V2 part.
    pub fn into_finding(self) -> Result<crate::core::finding::Finding, OcsfError> {
        let metadata_uid = non_blank(self.metadata.uid);
        let account = non_blank(self.cloud.account.uid);
        let finding_info_uid = non_blank(self.finding_info.uid);
        let product_uid = non_blank(self.metadata.product.uid);
        let id = match (&metadata_uid, &account, &finding_info_uid, &product_uid) {
            (Some(uid), _, _, _) => OcsfFindingId::MetadataUid(uid.clone()),
            (None, Some(a), Some(f), Some(p)) => OcsfFindingId::Triple {
                cloud_account_uid: a.clone(),
                finding_info_uid: f.clone(),
                metadata_product_uid: p.clone(),
            },
            _ => return Err(OcsfError::NoIdentifier),
        };
        let account = account.ok_or(OcsfError::NoAccount)?;
        // Latest modification wins: modified_time (ms), then modified_time_dt, then the event's time.
        let updated_at = self
            .finding_info
            .modified_time
            .and_then(millis_to_rfc3339)
            .or(self.finding_info.modified_time_dt)
            .or_else(|| self.time.and_then(millis_to_rfc3339));
        // The dedup key is (hub, account, id, product): the V2 identity without metadata.uid.
        let dedup_id = metadata_uid.clone().or_else(|| finding_info_uid.clone()).unwrap_or_default();
        Ok(crate::core::finding::Finding {
            id: dedup_id,
            product_arn: product_uid.unwrap_or_default(),
            aws_account_id: account,
            aws_account_name: non_blank(self.cloud.account.name),
            updated_at,
            first_observed_at: self.finding_info.first_seen_time_dt,
            last_observed_at: None,
            created_at: self.finding_info.created_time_dt,
            product_name: non_blank(self.metadata.product.name),
            title: self.finding_info.title.clone(),
            // OCSF status "Archived" is the V2 counterpart of RecordState ARCHIVED.
            record_state: self.status.filter(|s| s.eq_ignore_ascii_case("archived")).map(|_| "ARCHIVED".to_owned()),
            severity: self
                .severity
                .filter(|label| !label.trim().is_empty())
                .map(|label| label.to_uppercase())
                .or_else(|| {
                    let scaled = crate::core::posture::Severity::from_ocsf_id(self.severity_id?);
                    Some(scaled.label().to_uppercase())
                })
                .map(|label| crate::core::finding::Severity { label: Some(label) }),
            note: None,
            user_defined_fields: Default::default(),
            resources: Vec::new(),
            detection: None,
            ocsf: Some(Box::new(OcsfPart {
                id,
                comment: self.comment,
                title: self.finding_info.title,
                metadata_uid,
                finding_info_uid,
            })),
        })
    }
}

/// Decodes one OCSF finding of a "Findings Imported V2" event into the shared view.
pub fn decode(raw: &str) -> Result<crate::core::finding::Finding, OcsfDecodeError> {
    let finding: OcsfFinding = serde_json::from_str(raw).map_err(OcsfDecodeError::Json)?;
    finding.into_finding().map_err(OcsfDecodeError::Unusable)
}

#[derive(Debug, thiserror::Error)]
pub enum OcsfDecodeError {
    #[error("OCSF finding is not valid JSON of the expected types: {0}")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Unusable(OcsfError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINDING: &str = r#"{"metadata":{"uid":"m-1","product":{"uid":"arn:aws:securityhub:us-east-1::productv2/aws/guardduty","name":"GuardDuty"},"version":"1.6.0"},
        "cloud":{"account":{"uid":"111122223333","name":"payments-prod"},"provider":"AWS"},
        "finding_info":{"uid":"gd-1","title":"Recon","modified_time":1767225600500,"modified_time_dt":"2026-01-01T00:00:00.500Z"},
        "severity":"High","severity_id":4,"status":"New","comment":"analyst was here","extra":{"deep":[1,2]}}"#;

    #[test]
    fn reads_identifiers_account_time_and_comment() {
        let f = decode(FINDING).unwrap();
        let part = f.ocsf.as_deref().unwrap();
        assert_eq!(part.id, OcsfFindingId::MetadataUid("m-1".into()));
        assert_eq!(f.aws_account_id, "111122223333");
        assert_eq!(f.aws_account_name.as_deref(), Some("payments-prod"));
        assert_eq!(f.updated_at_millis(), Some(1767225600500));
        assert_eq!(part.comment.as_deref(), Some("analyst was here"));
        assert_eq!(f.severity.unwrap().label.as_deref(), Some("HIGH"));
    }

    #[test]
    fn without_metadata_uid_the_triple_names_it_and_without_either_it_is_unusable() {
        let triple = r#"{"metadata":{"product":{"uid":"p"}},"cloud":{"account":{"uid":"111122223333"}},"finding_info":{"uid":"f","modified_time_dt":"2026-01-01T00:00:00Z"}}"#;
        let f = decode(triple).unwrap();
        assert_eq!(
            f.ocsf.unwrap().id,
            OcsfFindingId::Triple {
                cloud_account_uid: "111122223333".into(),
                finding_info_uid: "f".into(),
                metadata_product_uid: "p".into()
            }
        );
        let none = r#"{"metadata":{"product":{"uid":"p"}},"finding_info":{"uid":"f"}}"#;
        assert!(matches!(decode(none), Err(OcsfDecodeError::Unusable(OcsfError::NoIdentifier))));
        let no_account = r#"{"metadata":{"uid":"m"}}"#;
        assert!(matches!(decode(no_account), Err(OcsfDecodeError::Unusable(OcsfError::NoAccount))));
        assert!(matches!(decode(r#"{"metadata":{"uid":7}}"#), Err(OcsfDecodeError::Json(_))));
        assert!(decode("[]").is_err(), "an array is no finding");
    }
}
