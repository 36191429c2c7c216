//! Which findings get a Detective investigation, and of which IAM entities. Pure.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::core::enrich::keys;
use crate::core::event::EventKind;
use crate::core::finding::Finding;
use crate::core::outcome::{FindingOutcome, SkipReason};
use crate::core::time::parse_timestamp_millis;

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

fn is_guardduty(finding: &Finding) -> bool {
    finding.product_arn.ends_with("/guardduty")
        || finding.product_name.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("guardduty"))
}

/// Decides whether a finding asks for an investigation. A finding whose investigation already
/// ended is not investigated again, unless an analyst asks through the custom action (the job
/// table still holds one investigation per entity and window).
pub fn trigger(finding: &Finding, kind: &EventKind, criteria: &Criteria) -> Option<Trigger> {
    // OCSF findings of the new hub are not investigated: their resources are not decoded, and
    // the investigator writes its verdict with BatchUpdateFindings, which cannot reach them.
    if finding.ocsf.is_some() {
        return None;
    }
    if let EventKind::CustomAction { action_name } = kind {
        return (action_name == &criteria.action).then_some(Trigger::CustomAction);
    }
    match finding.user_defined_fields.get(keys::INVESTIGATE).map(String::as_str) {
        Some("true") => return Some(Trigger::Requested),
        Some("complete" | "failed") => return None,
        _ => {}
    }
    let severity = finding.severity.as_ref().and_then(|s| s.label.as_deref()).unwrap_or_default();
    (is_guardduty(finding) && criteria.severities.contains(severity)).then_some(Trigger::GuardDutySeverity)
}

/// An IAM entity Detective can investigate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    pub arn: String,
}

/// Why a resource named no entity we can investigate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolvable {
    /// Root credentials, federated users and services: Detective investigates users and roles.
    UnsupportedPrincipal(String),
    MissingDetails,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct AccessKeyDetails {
    #[serde(default)]
    principal_type: Option<String>,
    #[serde(default)]
    principal_name: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    session_context: Option<SessionContext>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SessionContext {
    #[serde(default)]
    session_issuer: Option<SessionIssuer>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SessionIssuer {
    #[serde(default)]
    arn: Option<String>,
}

#[derive(Deserialize, Default)]
struct ResourceDetails {
    #[serde(rename = "AwsIamAccessKey", default)]
    access_key: Option<AccessKeyDetails>,
}

fn is_iam_arn(arn: &str, kind: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    parts.next() == Some("arn")
        && parts.next().is_some()
        && parts.next() == Some("iam")
        && parts.next() == Some("")
        && parts.next().is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|r| r.starts_with(&format!("{kind}/")))
}

/// Every IAM entity the finding names, deduplicated, and what could not be resolved.
///
/// Access keys are resolved by their principal type: an IAM user's key is investigated as the
/// user, an assumed role's as the role that issued the session. (The Detective sample always
/// built `role/<PrincipalName>`, which is wrong for users and for most sessions.)
pub fn entities(finding: &Finding) -> (BTreeSet<Entity>, Vec<Unresolvable>) {
    let mut found = BTreeSet::new();
    let mut unresolved = Vec::new();
    for resource in &finding.resources {
        match resource.resource_type.as_str() {
            "AwsIamUser" if is_iam_arn(&resource.id, "user") => {
                found.insert(Entity { arn: resource.id.clone() });
            }
            "AwsIamRole" if is_iam_arn(&resource.id, "role") => {
                found.insert(Entity { arn: resource.id.clone() });
            }
            "AwsIamAccessKey" => {
                let details: ResourceDetails =
                    resource.details.as_ref().and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or_default();
                let Some(key) = details.access_key else {
                    unresolved.push(Unresolvable::MissingDetails);
                    continue;
                };
                match key.principal_type.as_deref() {
                    Some("IAMUser") => match key.user_name.or(key.principal_name) {
                        Some(user) => {
                            found
                                .insert(Entity { arn: format!("arn:aws:iam::{}:user/{user}", finding.aws_account_id) });
                        }
                        None => unresolved.push(Unresolvable::MissingDetails),
                    },
                    Some("AssumedRole") => {
                        match key.session_context.and_then(|s| s.session_issuer).and_then(|i| i.arn) {
                            Some(arn) if is_iam_arn(&arn, "role") => {
                                found.insert(Entity { arn });
                            }
                            _ => unresolved.push(Unresolvable::MissingDetails),
                        }
                    }
                    other => unresolved.push(Unresolvable::UnsupportedPrincipal(other.unwrap_or("unknown").to_owned())),
                }
            }
            _ => {}
        }
    }
    (found, unresolved)
}

/// Whether a finding with this enrichment outcome may still be investigated: one whose
/// enrichment was skipped as already done or unchanged may still ask for an investigation (an
/// automation rule or a custom action); superseded, archived and unreadable ones may not.
pub fn may_investigate(outcome: &FindingOutcome) -> bool {
    match outcome {
        FindingOutcome::Skipped(reason) => matches!(reason, SkipReason::AlreadyEnriched | SkipReason::Unchanged),
        _ => true,
    }
}

/// The scope window's start: the lookback before the hour of the finding's first observation.
/// Whole hours make the job key the same on every replay of the finding.
pub fn scope_start(finding: &Finding, lookback_hours: i64, now_millis: i64) -> i64 {
    let observed = [&finding.first_observed_at, &finding.created_at, &finding.updated_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse_timestamp_millis))
        .unwrap_or(now_millis)
        .min(now_millis);
    let hour = observed.div_euclid(3_600_000) * 3600;
    hour - lookback_hours * 3600
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(resources: serde_json::Value, extra: serde_json::Value) -> Finding {
        let mut f = json!({
            "Id": "f", "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "AwsAccountId": "111122223333", "Severity": {"Label": "HIGH"}, "Resources": resources,
        });
        f.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(f).unwrap()
    }

    fn access_key(details: serde_json::Value) -> serde_json::Value {
        json!([{"Type": "AwsIamAccessKey", "Id": "AWS::IAM::AccessKey:ASIAX", "Details": {"AwsIamAccessKey": details}}])
    }

    #[test]
    fn entity_resolution_table() {
        let cases: Vec<(&str, serde_json::Value, Vec<&str>, usize)> = vec![
            (
                "user by ARN",
                json!([{"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/alice"}]),
                vec!["arn:aws:iam::111122223333:user/alice"],
                0,
            ),
            (
                "role by ARN",
                json!([{"Type": "AwsIamRole", "Id": "arn:aws:iam::111122223333:role/app"}]),
                vec!["arn:aws:iam::111122223333:role/app"],
                0,
            ),
            (
                "access key of a user",
                access_key(json!({"PrincipalType": "IAMUser", "PrincipalName": "bob", "UserName": "bob"})),
                vec!["arn:aws:iam::111122223333:user/bob"],
                0,
            ),
            (
                "access key of an assumed role",
                access_key(json!({
                "PrincipalType": "AssumedRole", "PrincipalName": "app-session",
                "SessionContext": {"SessionIssuer": {"Arn": "arn:aws:iam::111122223333:role/deploy", "Type": "Role"}}})),
                vec!["arn:aws:iam::111122223333:role/deploy"],
                0,
            ),
            ("root credentials", access_key(json!({"PrincipalType": "Root", "PrincipalName": "root"})), vec![], 1),
            ("assumed role without issuer", access_key(json!({"PrincipalType": "AssumedRole"})), vec![], 1),
            (
                "several entities, deduplicated",
                json!([
                {"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/alice"},
                {"Type": "AwsIamRole", "Id": "arn:aws:iam::111122223333:role/app"},
                {"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/alice"},
                {"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::b"},
                {"Type": "AwsIamAccessKey", "Id": "k", "Details": {"AwsIamAccessKey": {"PrincipalType": "IAMUser", "UserName": "alice"}}}]),
                vec!["arn:aws:iam::111122223333:role/app", "arn:aws:iam::111122223333:user/alice"],
                0,
            ),
            ("not an IAM ARN", json!([{"Type": "AwsIamRole", "Id": "role-name-only"}]), vec![], 0),
        ];
        for (name, resources, expected, unresolved) in cases {
            let (found, skipped) = entities(&finding(resources, json!({})));
            let arns: Vec<&str> = found.iter().map(|e| e.arn.as_str()).collect();
            assert_eq!(arns, expected, "{name}");
            assert_eq!(skipped.len(), unresolved, "{name}");
        }
    }

    #[test]
    fn selection_table() {
        let criteria = Criteria::default();
        let imported = EventKind::Imported;
        let action = |name: &str| EventKind::CustomAction { action_name: name.into() };
        let plain = finding(json!([]), json!({}));
        assert_eq!(trigger(&plain, &imported, &criteria), Some(Trigger::GuardDutySeverity));
        let low = finding(json!([]), json!({"Severity": {"Label": "LOW"}}));
        assert_eq!(trigger(&low, &imported, &criteria), None);
        let ocsf = crate::core::ocsf::decode(
            r#"{"metadata":{"uid":"m","product":{"uid":"arn:aws:securityhub:us-east-1::productv2/aws/guardduty","name":"GuardDuty"}},
                "cloud":{"account":{"uid":"111122223333"}},"severity":"High"}"#,
        )
        .unwrap();
        assert_eq!(
            trigger(&ocsf, &EventKind::ImportedV2, &criteria),
            None,
            "the new hub's findings are not investigated"
        );
        let inspector =
            finding(json!([]), json!({"ProductArn": "arn:aws:securityhub:us-east-1::product/aws/inspector"}));
        assert_eq!(trigger(&inspector, &imported, &criteria), None);
        assert_eq!(trigger(&inspector, &action("investigate"), &criteria), Some(Trigger::CustomAction));
        assert_eq!(trigger(&inspector, &action("enrich"), &criteria), None);
        let requested = finding(json!([]), json!({"ProductArn": "p", "UserDefinedFields": {"investigate": "true"}}));
        assert_eq!(trigger(&requested, &imported, &criteria), Some(Trigger::Requested));
        let done = finding(json!([]), json!({"UserDefinedFields": {"investigate": "complete"}}));
        assert_eq!(trigger(&done, &imported, &criteria), None, "never re-investigated on every update");
    }
}
