//! Which cached accounts a change in AWS Organizations or Account Management makes stale, read
//! off the CloudTrail events the management account forwards (the `account-events` Lambda),
//! so that re-tags, moves and new security contacts show up without waiting for the cache TTL.

use serde::Serialize;
use serde_json::Value;

use crate::core::finding::is_account_id;

/// The API calls (CloudTrail `eventSource`, `eventName`) that change what we cache about an
/// account. The EventBridge rules in `pipes/` list the same names (checked by their tests).
pub const WATCHED_CALLS: &[(&str, &str)] = &[
    ("organizations.amazonaws.com", "TagResource"),
    ("organizations.amazonaws.com", "UntagResource"),
    ("organizations.amazonaws.com", "MoveAccount"),
    ("organizations.amazonaws.com", "RemoveAccountFromOrganization"),
    ("organizations.amazonaws.com", "CloseAccount"),
    ("account.amazonaws.com", "PutAlternateContact"),
    ("account.amazonaws.com", "DeleteAlternateContact"),
];

/// What an event means for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// These accounts' entries are stale.
    Accounts(Vec<String>),
    /// Nothing we cache changed, and why.
    Ignored(&'static str),
}

/// Reads one EventBridge event of detail-type "AWS API Call via CloudTrail".
pub fn changed_accounts(event: &Value) -> Change {
    let detail = &event["detail"];
    let (Some(source), Some(name)) = (detail["eventSource"].as_str(), detail["eventName"].as_str()) else {
        return Change::Ignored("not a CloudTrail API call event");
    };
    if !WATCHED_CALLS.contains(&(source, name)) {
        return Change::Ignored("a call that changes nothing cached");
    }
    if !detail["errorCode"].is_null() {
        return Change::Ignored("the call failed");
    }
    let parameters = &detail["requestParameters"];
    let account = match name {
        // Tags of OUs, roots and policies are not copied to findings.
        "TagResource" | "UntagResource" => parameters["resourceId"].as_str(),
        "PutAlternateContact" | "DeleteAlternateContact" => {
            if parameters["alternateContactType"].as_str() != Some("SECURITY") {
                return Change::Ignored("not the security contact");
            }
            // Without accountId the caller changed its own contact: the management account.
            parameters["accountId"].as_str().or(event["account"].as_str())
        }
        _ => parameters["accountId"].as_str(),
    };
    match account {
        Some(id) if is_account_id(id) => Change::Accounts(vec![id.to_owned()]),
        Some(_) => Change::Ignored("not an account"),
        None => Change::Ignored("no account id in the request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An event as EventBridge delivers a CloudTrail record (fields trimmed to what we read,
    /// plus enough to look real).
    fn cloudtrail(source: &str, name: &str, parameters: Value) -> Value {
        json!({
            "version": "0", "id": "7a3e0c7e-0000-0000-0000-000000000000",
            "detail-type": "AWS API Call via CloudTrail",
            "source": format!("aws.{}", source.split('.').next().unwrap()),
            "account": "111111111111", "time": "2026-11-22T07:00:00Z", "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08", "eventSource": source, "eventName": name,
                "awsRegion": "us-east-1", "requestParameters": parameters, "responseElements": null,
                "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": "111111111111",
            },
        })
    }

    const ORGS: &str = "organizations.amazonaws.com";
    const ACCOUNT: &str = "account.amazonaws.com";

    #[test]
    fn account_changes_name_their_account() {
        for (source, name, parameters) in [
            (ORGS, "TagResource", json!({"resourceId": "222233334444", "tags": [{"key": "env", "value": "prod"}]})),
            (ORGS, "UntagResource", json!({"resourceId": "222233334444", "tagKeys": ["env"]})),
            (
                ORGS,
                "MoveAccount",
                json!({"accountId": "222233334444", "sourceParentId": "r-ab12", "destinationParentId": "ou-ab12-cdef5678"}),
            ),
            (ORGS, "RemoveAccountFromOrganization", json!({"accountId": "222233334444"})),
            (ORGS, "CloseAccount", json!({"accountId": "222233334444"})),
            (ACCOUNT, "PutAlternateContact", json!({"accountId": "222233334444", "alternateContactType": "SECURITY"})),
            (
                ACCOUNT,
                "DeleteAlternateContact",
                json!({"accountId": "222233334444", "alternateContactType": "SECURITY"}),
            ),
        ] {
            assert_eq!(
                changed_accounts(&cloudtrail(source, name, parameters)),
                Change::Accounts(vec!["222233334444".into()]),
                "{name}"
            );
        }
        assert_eq!(WATCHED_CALLS.len(), 7, "each watched call has a case above");
    }

    #[test]
    fn the_management_accounts_own_contact_has_no_account_id() {
        let event = cloudtrail(ACCOUNT, "PutAlternateContact", json!({"alternateContactType": "SECURITY"}));
        assert_eq!(changed_accounts(&event), Change::Accounts(vec!["111111111111".into()]));
    }

    #[test]
    fn what_changes_nothing_cached_is_ignored_with_a_reason() {
        let mut failed = cloudtrail(ORGS, "MoveAccount", json!({"accountId": "222233334444"}));
        failed["detail"]["errorCode"] = json!("AccessDenied");
        for (event, reason) in [
            (cloudtrail(ORGS, "TagResource", json!({"resourceId": "ou-ab12-cdef5678"})), "not an account"),
            (
                cloudtrail(
                    ACCOUNT,
                    "PutAlternateContact",
                    json!({"accountId": "222233334444", "alternateContactType": "BILLING"}),
                ),
                "not the security contact",
            ),
            (cloudtrail(ORGS, "CreateOrganizationalUnit", json!({"name": "x"})), "a call that changes nothing cached"),
            (cloudtrail(ORGS, "MoveAccount", json!({})), "no account id in the request"),
            (failed, "the call failed"),
            (json!({"detail-type": "Scheduled Event", "detail": {}}), "not a CloudTrail API call event"),
        ] {
            assert_eq!(changed_accounts(&event), Change::Ignored(reason));
        }
    }
}
