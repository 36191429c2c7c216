//! The subset of an ASFF finding that we read, and the identifier we write back by.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::time::parse_timestamp_millis;

/// What Security Hub identifies a finding by in BatchUpdateFindings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FindingId {
    pub id: String,
    pub product_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Note {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub updated_by: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Severity {
    #[serde(default)]
    pub label: Option<String>,
}

/// A resource of the finding; `details` stays raw because only a few types are ever read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub resource_type: String,
    pub id: String,
    #[serde(default)]
    pub details: Option<Box<RawValue>>,
}

/// A Security Hub finding as far as enrichment needs it. Unknown fields are skipped by serde
/// without being allocated, which keeps decoding of 200 KB findings cheap.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Finding {
    pub id: String,
    pub product_arn: String,
    pub aws_account_id: String,
    /// Security Hub fills this in itself; it is our fallback name while Organizations is unreachable.
    #[serde(default)]
    pub aws_account_name: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub first_observed_at: Option<String>,
    #[serde(default)]
    pub last_observed_at: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub record_state: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub note: Option<Note>,
    #[serde(default)]
    pub user_defined_fields: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// GuardDuty Extended Threat Detection's attack sequence, kept raw: only sequence findings
    /// carry it, and only the investigation selection reads it.
    #[serde(default)]
    pub detection: Option<Box<RawValue>>,
    /// Set for findings of the new Security Hub (OCSF, "Findings Imported V2"), which are
    /// written back with BatchUpdateFindingsV2; `None` for ASFF findings.
    #[serde(skip)]
    pub ocsf: Option<Box<OcsfPart>>,
}

/// Which hub a finding came from and is written back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Hub {
    /// Security Hub CSPM: ASFF findings, BatchUpdateFindings.
    #[serde(rename = "cspm")]
    Cspm,
    /// The new Security Hub: OCSF findings, BatchUpdateFindingsV2.
    #[serde(rename = "v2")]
    V2,
}

impl Finding {
    pub fn hub(&self) -> Hub {
        if self.ocsf.is_some() { Hub::V2 } else { Hub::Cspm }
    }

    /// What "the same finding" means for dedup across both hubs: the hub, the account and the
    /// identifier (for OCSF: metadata.uid or finding_info.uid, and the product uid).
    pub fn dedup_key(&self) -> (Hub, &str, &str, &str) {
        (self.hub(), self.aws_account_id.as_str(), self.id.as_str(), self.product_arn.as_str())
    }

    pub fn identifier(&self) -> FindingId {
        FindingId { id: self.id.clone(), product_arn: self.product_arn.clone() }
    }

    /// `UpdatedAt` in milliseconds since the epoch, for "keep the latest" dedup.
    /// ASFF timestamps come with varying precision, so string order is not time order.
    pub fn updated_at_millis(&self) -> Option<i64> {
        parse_timestamp_millis(self.updated_at.as_deref()?)
    }

    pub fn is_archived(&self) -> bool {
        self.record_state.as_deref() == Some("ARCHIVED")
    }
}

/// A 12-digit AWS account id: anything else cannot be looked up.
pub fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// How BatchUpdateFindingsV2 names a finding. The API takes either list, never both in one
/// request, so requests are grouped by variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OcsfFindingId {
    /// `metadata.uid`: globally unique, preferred when the finding has one.
    MetadataUid(String),
    /// `cloud.account.uid` + `finding_info.uid` + `metadata.product.uid`.
    Triple { cloud_account_uid: String, finding_info_uid: String, metadata_product_uid: String },
}

impl OcsfFindingId {
    /// The finding's uid as a log or event shows it.
    pub fn display_uid(&self) -> &str {
        match self {
            OcsfFindingId::MetadataUid(uid) => uid,
            OcsfFindingId::Triple { finding_info_uid, .. } => finding_info_uid,
        }
    }
}

/// What the V2 path needs of an OCSF finding beyond the shared `Finding` view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsfPart {
    pub id: OcsfFindingId,
    /// The finding's current `comment`: ours (marked) or someone else's, which we never overwrite.
    pub comment: Option<String>,
    pub title: Option<String>,
    /// `metadata.uid` and `finding_info.uid` as the event carries them, for the enriched event.
    pub metadata_uid: Option<String>,
    pub finding_info_uid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_we_need_and_ignores_the_rest() {
        let finding: Finding = serde_json::from_str(
            r#"{"Id":"f","ProductArn":"p","AwsAccountId":"111122223333","Extra":{"deep":[1,2]},
                "UserDefinedFields":{"team":"blue"},"Note":{"Text":"t","UpdatedBy":"u","UpdatedAt":"x"},
                "Resources":[{"Type":"AwsIamRole","Id":"arn:aws:iam::1:role/r","Details":{"AwsIamRole":{}}}]}"#,
        )
        .unwrap();
        assert_eq!(finding.identifier(), FindingId { id: "f".into(), product_arn: "p".into() });
        assert_eq!(finding.user_defined_fields["team"], "blue");
        assert_eq!(finding.resources[0].resource_type, "AwsIamRole");
        assert!(is_account_id(&finding.aws_account_id));
        assert!(!is_account_id("11112222333a"));
    }
}
