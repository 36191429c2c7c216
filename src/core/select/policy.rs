//! Trigger policy: which findings ask for a Detective investigation, and when (the criteria,
//! what every copy of a finding in a batch asks for, and which enrichment outcomes may still
//! be investigated). Pure.

use std::collections::{BTreeSet, HashMap};

use crate::core::enrich::keys;
use crate::core::event::{Candidate, EventKind};
use crate::core::finding::{Finding, FindingId};
use crate::core::investigation::NOT_COVERED;
use crate::core::outcome::{FindingOutcome, SkipReason};

/// What makes a finding worth an investigation (`INVESTIGATE_SEVERITIES`, `INVESTIGATE_ACTION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub severities: BTreeSet<String>,
    pub action: String,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            severities: ["HIGH", "CRITICAL", "MEDIUM"].into_iter().map(str::to_owned).collect(),
            action: "investigate".to_owned(),
        }
    }
}

/// Why a finding was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    GuardDutySeverity,
    CustomAction,
    Requested,
}

impl Trigger {
    /// A person (a custom action, or an automation rule someone wrote) asked for this one.
    pub fn is_explicit(self) -> bool {
        !matches!(self, Trigger::GuardDutySeverity)
    }
}

/// `investigate` values that say the finding's investigation has ended.
const SETTLED: [&str; 3] = ["complete", "failed", NOT_COVERED];

/// What all the copies of one finding in a batch ask for, whichever copy dedup keeps and in
/// whatever order they arrived. A custom action is an event, not state: the analyst's request
/// travels only in the Custom Action copy, and a duplicate Imported copy (same `UpdatedAt`,
/// later in the batch) would otherwise win dedup and drop it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asks {
    /// Custom actions any copy arrived through.
    pub actions: BTreeSet<String>,
    /// The latest `UpdatedAt` of a copy saying `investigate=true` (`Some(None)`: one without a
    /// timestamp), and of a copy saying the investigation ended. Comparing the two is what
    /// makes the answer independent of arrival order.
    requested_at: Option<Option<i64>>,
    settled_at: Option<Option<i64>>,
}

impl Asks {
    /// `investigate=true` is newer than any ended investigation on the finding.
    pub fn requested(&self) -> bool {
        self.requested_at.is_some() && self.requested_at > self.settled_at
    }

    /// An investigation ended and nothing newer asks for another.
    pub fn settled(&self) -> bool {
        self.settled_at.is_some() && !self.requested()
    }

    /// An analyst chose a custom action on the finding: that is permission to re-enrich it
    /// even if it is already enriched.
    pub fn by_custom_action(&self) -> bool {
        !self.actions.is_empty()
    }

    fn add(&mut self, finding: &Finding, kind: &EventKind) {
        if let EventKind::CustomAction { action_name } = kind {
            self.actions.insert(action_name.clone());
        }
        let at = Some(finding.updated_at_millis());
        match finding.user_defined_fields.get(keys::INVESTIGATE).map(String::as_str) {
            Some("true") => self.requested_at = self.requested_at.max(at),
            Some(v) if SETTLED.contains(&v) => self.settled_at = self.settled_at.max(at),
            _ => {}
        }
    }
}

/// The asks of every finding in the batch, over all its copies (superseded and screened ones
/// included).
pub fn asks(candidates: &[Candidate]) -> HashMap<FindingId, Asks> {
    let mut all: HashMap<FindingId, Asks> = HashMap::new();
    for candidate in candidates {
        all.entry(candidate.finding.identifier()).or_default().add(&candidate.finding, &candidate.kind);
    }
    all
}

fn is_guardduty(finding: &Finding) -> bool {
    finding.product_arn.ends_with("/guardduty")
        || finding.product_name.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("guardduty"))
}

/// Decides whether a finding asks for an investigation, from what all its copies ask. A finding
/// whose investigation already ended is not investigated again, unless an analyst asks through
/// the custom action (the job table still holds one investigation per entity and window).
pub fn trigger(finding: &Finding, asks: &Asks, criteria: &Criteria) -> Option<Trigger> {
    // OCSF findings of the new hub are not investigated: their resources are not decoded, and
    // the investigator writes its verdict with BatchUpdateFindings, which cannot reach them.
    if finding.ocsf.is_some() {
        return None;
    }
    if asks.actions.contains(&criteria.action) {
        return Some(Trigger::CustomAction);
    }
    if asks.requested() {
        return Some(Trigger::Requested);
    }
    if asks.settled() {
        return None;
    }
    (is_guardduty(finding) && criteria.severities.contains(severity_label(finding)))
        .then_some(Trigger::GuardDutySeverity)
}

fn severity_label(finding: &Finding) -> &str {
    finding.severity.as_ref().and_then(|s| s.label.as_deref()).unwrap_or_default()
}

/// Which job Detective's quota goes to first: explicit requests, then by severity.
pub fn priority(finding: &Finding, trigger: Trigger) -> u8 {
    let severity = match severity_label(finding) {
        "CRITICAL" => 4,
        "HIGH" => 3,
        "MEDIUM" => 2,
        "LOW" => 1,
        _ => 0,
    };
    if trigger.is_explicit() { 10 + severity } else { severity }
}

/// Whether a finding with this enrichment outcome may still be investigated: one whose
/// enrichment was skipped as already done or unchanged may still ask for an investigation (an
/// automation rule or a custom action); superseded, archived and unreadable ones may not.
pub fn may_investigate(outcome: &FindingOutcome) -> bool {
    match outcome {
        FindingOutcome::Skipped(reason) => matches!(
            reason,
            SkipReason::AlreadyEnriched | SkipReason::Unchanged | SkipReason::Current | SkipReason::StillPartial
        ),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::select::test_support::finding;
    use serde_json::json;

    fn asks_of(f: &Finding, kind: &EventKind) -> Asks {
        let mut asks = Asks::default();
        asks.add(f, kind);
        asks
    }

    #[test]
    fn selection_table() {
        let criteria = Criteria::default();
        let imported = EventKind::Imported;
        let action = |name: &str| EventKind::CustomAction { action_name: name.into() };
        let t = |f: &Finding, kind: &EventKind| trigger(f, &asks_of(f, kind), &criteria);
        let plain = finding(json!([]), json!({}));
        assert_eq!(t(&plain, &imported), Some(Trigger::GuardDutySeverity));
        let low = finding(json!([]), json!({"Severity": {"Label": "LOW"}}));
        assert_eq!(t(&low, &imported), None);
        let ocsf = crate::core::ocsf::decode(
            r#"{"metadata":{"uid":"m","product":{"uid":"arn:aws:securityhub:us-east-1::productv2/aws/guardduty","name":"GuardDuty"}},
                "cloud":{"account":{"uid":"111122223333"}},"severity":"High"}"#,
        )
        .unwrap();
        assert_eq!(t(&ocsf, &imported), None, "the new hub's findings are not investigated");
        let inspector =
            finding(json!([]), json!({"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/inspector"}));
        assert_eq!(t(&inspector, &imported), None);
        assert_eq!(t(&inspector, &action("investigate")), Some(Trigger::CustomAction));
        assert_eq!(t(&inspector, &action("enrich")), None);
        let requested = finding(json!([]), json!({"ProductArn": "p", "UserDefinedFields": {"investigate": "true"}}));
        assert_eq!(t(&requested, &imported), Some(Trigger::Requested));
        let done = finding(json!([]), json!({"UserDefinedFields": {"investigate": "complete"}}));
        assert_eq!(t(&done, &imported), None, "never re-investigated on every update");
        let outside = finding(json!([]), json!({"UserDefinedFields": {"investigate": "not-covered"}}));
        assert_eq!(t(&outside, &imported), None, "an account outside the graph is not asked again");
    }

    #[test]
    fn a_request_newer_than_the_last_verdict_wins_whatever_the_order() {
        let at = |v: &str, t: &str| {
            finding(json!([]), json!({"ProductArn": "p", "UpdatedAt": t, "UserDefinedFields": {"investigate": v}}))
        };
        let old_verdict = at("complete", "2026-01-01T00:00:00Z");
        let new_request = at("true", "2026-01-02T00:00:00Z");
        for order in [[&old_verdict, &new_request], [&new_request, &old_verdict]] {
            let mut asks = Asks::default();
            for f in order {
                asks.add(f, &EventKind::Imported);
            }
            assert!(asks.requested());
            assert_eq!(trigger(order[0], &asks, &Criteria::default()), Some(Trigger::Requested));
        }
        let mut asks = asks_of(&new_request, &EventKind::Imported);
        asks.add(&at("complete", "2026-01-03T00:00:00Z"), &EventKind::Imported);
        assert!(asks.settled(), "the verdict written after the request ends it");
    }
}
