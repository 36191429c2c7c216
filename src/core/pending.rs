//! Coalescing writes across batches (issue 21): the snapshot of a finding that waits in the
//! pending-writes store, and the rules for what waits and what is written: while the
//! BatchUpdateFindings quota is saturated an account's few findings of a batch wait, to go out
//! with its later ones in requests of up to 100, or once the oldest has waited the delay.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::event::{Candidate, EventKind};
use crate::core::finding::{Finding, Note, OcsfFindingId, OcsfPart, Severity};
use crate::core::rate::Rate;

/// Findings per BatchUpdateFindings (and V2) request: an account with this many waiting is a
/// full request and goes at once.
pub const FULL_GROUP: usize = 100;

/// What the pipeline reads of a finding, kept while it waits: enough to render, decide
/// "current", group and publish it again with the account's metadata of the moment it is
/// written (resources and attack sequences are not kept: investigations were queued when the
/// finding came in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFinding {
    pub id: String,
    pub product_arn: String,
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The Note's text and author, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// The new hub's identifier and comment; `None` for a Security Hub CSPM finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsf: Option<PendingOcsf>,
    /// When it was put in the store (epoch milliseconds): the delay is counted from here.
    pub held_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOcsf {
    pub id: OcsfFindingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_info_uid: Option<String>,
}

impl PendingFinding {
    pub fn of(finding: &Finding, held_at_ms: i64) -> Self {
        PendingFinding {
            id: finding.id.clone(),
            product_arn: finding.product_arn.clone(),
            account: finding.aws_account_id.clone(),
            account_name: finding.aws_account_name.clone(),
            updated_at: finding.updated_at.clone(),
            product_name: finding.product_name.clone(),
            title: finding.title.clone(),
            severity: finding.severity.as_ref().and_then(|s| s.label.clone()),
            note: finding.note.as_ref().map(|n| (n.text.clone(), n.updated_by.clone())),
            fields: finding.user_defined_fields.clone(),
            ocsf: finding.ocsf.as_deref().map(|o| PendingOcsf {
                id: o.id.clone(),
                comment: o.comment.clone(),
                metadata_uid: o.metadata_uid.clone(),
                finding_info_uid: o.finding_info_uid.clone(),
            }),
            held_at_ms,
        }
    }

    /// Which finding this is, per hub: the store keeps one snapshot per key, the latest.
    pub fn key(&self) -> String {
        match &self.ocsf {
            None => format!("cspm|{}|{}", self.product_arn, self.id),
            Some(_) => format!("v2|{}|{}", self.product_arn, self.id),
        }
    }

    /// The finding again, as the pipeline serves it.
    pub fn candidate(&self) -> Candidate {
        let finding = Finding {
            id: self.id.clone(),
            product_arn: self.product_arn.clone(),
            aws_account_id: self.account.clone(),
            aws_account_name: self.account_name.clone(),
            updated_at: self.updated_at.clone(),
            first_observed_at: None,
            last_observed_at: None,
            created_at: None,
            product_name: self.product_name.clone(),
            title: self.title.clone(),
            record_state: None,
            severity: self.severity.clone().map(|label| Severity { label: Some(label) }),
            note: self.note.clone().map(|(text, updated_by)| Note { text, updated_by }),
            user_defined_fields: self.fields.clone(),
            resources: Vec::new(),
            detection: None,
            ocsf: self.ocsf.as_ref().map(|o| {
                Box::new(OcsfPart {
                    id: o.id.clone(),
                    comment: o.comment.clone(),
                    title: self.title.clone(),
                    metadata_uid: o.metadata_uid.clone(),
                    finding_info_uid: o.finding_info_uid.clone(),
                })
            }),
        };
        let kind = if finding.ocsf.is_some() { EventKind::ImportedV2 } else { EventKind::Imported };
        Candidate { record: 0, finding, kind }
    }
}

/// One account's findings in the store, as its index entry tells: how many, and since when the
/// oldest waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAccount {
    pub account: String,
    pub findings: usize,
    pub oldest_ms: i64,
}

/// The quota is free when what waits and this batch fit in what it grants within a second: its
/// burst and a second of its rate. Then nothing waits.
pub fn quota_is_free(waiting_calls: usize, batch_calls: usize, pool: Rate) -> bool {
    (waiting_calls + batch_calls) as f64 <= f64::from(pool.burst) + pool.per_second
}

/// Requests the waiting findings need at the least: one per account and 100 findings.
pub fn waiting_calls(accounts: &[PendingAccount]) -> usize {
    accounts.iter().map(|a| a.findings.div_ceil(FULL_GROUP).max(1)).sum()
}

/// The accounts whose findings wait, when the quota is saturated: those with fewer than a full
/// request in this batch. An account with a full request or more is written now, all of it.
pub fn accounts_to_hold(findings_per_account: &BTreeMap<String, usize>) -> Vec<String> {
    findings_per_account.iter().filter(|(_, n)| **n < FULL_GROUP).map(|(a, _)| a.clone()).collect()
}

/// Which waiting accounts are written now, in order: full requests first (largest first), then
/// those whose oldest finding has waited `delay_ms` by `due_by_ms` (oldest first); with
/// `everything` (the quota free: nothing is gained by waiting longer), every account, largest
/// first.
pub fn accounts_to_write(accounts: &[PendingAccount], due_by_ms: i64, delay_ms: i64, everything: bool) -> Vec<String> {
    let mut full: Vec<&PendingAccount> = Vec::new();
    let mut due: Vec<&PendingAccount> = Vec::new();
    let mut rest: Vec<&PendingAccount> = Vec::new();
    for account in accounts {
        if account.findings >= FULL_GROUP {
            full.push(account);
        } else if account.oldest_ms + delay_ms <= due_by_ms {
            due.push(account);
        } else if everything {
            rest.push(account);
        }
    }
    full.sort_by(|a, b| b.findings.cmp(&a.findings).then_with(|| a.account.cmp(&b.account)));
    due.sort_by(|a, b| a.oldest_ms.cmp(&b.oldest_ms).then_with(|| a.account.cmp(&b.account)));
    rest.sort_by(|a, b| b.findings.cmp(&a.findings).then_with(|| a.account.cmp(&b.account)));
    full.into_iter().chain(due).chain(rest).map(|a| a.account.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, findings: usize, oldest_ms: i64) -> PendingAccount {
        PendingAccount { account: id.into(), findings, oldest_ms }
    }

    #[test]
    fn a_snapshot_serves_the_same_finding_again() {
        let finding: Finding = serde_json::from_str(
            r#"{"Id":"f","ProductArn":"p","AwsAccountId":"111122223333","AwsAccountName":"n","Title":"t",
                "Severity":{"Label":"HIGH"},"Note":{"Text":"x","UpdatedBy":"y"},"UserDefinedFields":{"k":"v"}}"#,
        )
        .unwrap();
        let pending = PendingFinding::of(&finding, 7);
        let again: PendingFinding = serde_json::from_str(&serde_json::to_string(&pending).unwrap()).unwrap();
        assert_eq!(again, pending);
        let served = again.candidate().finding;
        assert_eq!(served.identifier(), finding.identifier());
        assert_eq!(served.note, finding.note);
        assert_eq!(served.user_defined_fields, finding.user_defined_fields);
        assert_eq!(served.hub(), finding.hub());
        assert_eq!(served.severity.and_then(|s| s.label).as_deref(), Some("HIGH"));
        assert_eq!(pending.key(), "cspm|p|f");
    }

    #[test]
    fn nothing_waits_while_the_quota_is_free() {
        let pool = Rate { per_second: 9.0, burst: 27 };
        assert!(quota_is_free(0, 36, pool));
        assert!(!quota_is_free(1, 36, pool));
        let batch = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 100), ("c".to_owned(), 99)]);
        assert_eq!(accounts_to_hold(&batch), ["a", "c"]);
    }

    #[test]
    fn full_requests_go_first_then_the_due_then_the_rest_only_when_the_quota_is_free() {
        let accounts = [account("a", 3, 0), account("b", 150, 50), account("c", 1, 10), account("d", 5, 100)];
        assert_eq!(accounts_to_write(&accounts, 60, 60, false), ["b", "a"]);
        assert_eq!(accounts_to_write(&accounts, 70, 60, false), ["b", "a", "c"]);
        assert_eq!(accounts_to_write(&accounts, 60, 60, true), ["b", "a", "d", "c"]);
        assert_eq!(waiting_calls(&accounts), 5);
    }
}
