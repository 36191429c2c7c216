//! ASFF IAM entity decoding: the IAM users and roles a finding's resources name, the right ARN
//! per access key `PrincipalType` (`SessionContext.SessionIssuer.Arn` for assumed roles). Pure.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::core::finding::Finding;

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

/// Whether `arn` is an IAM ARN of this resource kind (`user`, `role`) in a 12-digit account.
pub(super) fn is_iam_arn(arn: &str, kind: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::select::test_support::finding;
    use serde_json::json;

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
}
