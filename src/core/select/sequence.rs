//! Attack sequences (GuardDuty Extended Threat Detection): the IAM entities of a sequence
//! finding's actors, and which findings are its signals. Pure.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::core::finding::Finding;
use crate::core::select::iam::{Entity, is_iam_arn};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Detection {
    #[serde(default)]
    sequence: Option<Sequence>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Sequence {
    #[serde(default)]
    actors: Vec<Actor>,
    #[serde(default)]
    signals: Vec<Signal>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Actor {
    #[serde(default)]
    user: Option<ActorUser>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ActorUser {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "Type")]
    user_type: Option<String>,
    #[serde(default)]
    account: Option<UserAccount>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct UserAccount {
    #[serde(default)]
    uid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Signal {
    #[serde(default)]
    id: Option<String>,
}

/// An attack sequence (GuardDuty Extended Threat Detection): its actors as IAM entities, and
/// the ids of its signals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttackSequence {
    pub actors: BTreeSet<Entity>,
    pub signals: BTreeSet<String>,
}

/// The IAM entity of a sequence's actor. The Security Hub reference documents `ActorUser`'s
/// fields (Uid, Name, Type, Account.Uid) but not their values, so every form is accepted that
/// names a user or role unambiguously: an IAM user or role ARN, an STS assumed-role ARN (the
/// role that issued the session), or an IAM user's name with its account. Anything else is
/// left out rather than guessed.
fn actor_entity(user: &ActorUser) -> Option<Entity> {
    let uid = user.uid.as_deref().unwrap_or_default();
    if is_iam_arn(uid, "user") || is_iam_arn(uid, "role") {
        return Some(Entity { arn: uid.to_owned() });
    }
    if let Some(rest) = uid.strip_prefix("arn:aws:sts::") {
        let (account, resource) = rest.split_once(':')?;
        let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
        let arn = format!("arn:aws:iam::{account}:role/{role}");
        return is_iam_arn(&arn, "role").then_some(Entity { arn });
    }
    let account = user.account.as_ref().and_then(|a| a.uid.as_deref())?;
    match (user.user_type.as_deref(), user.name.as_deref()) {
        (Some("IAMUser"), Some(name)) => {
            let arn = format!("arn:aws:iam::{account}:user/{name}");
            is_iam_arn(&arn, "user").then_some(Entity { arn })
        }
        _ => None,
    }
}

/// The finding's attack sequence, when it is one.
pub fn attack_sequence(finding: &Finding) -> Option<AttackSequence> {
    let detection: Detection = serde_json::from_str(finding.detection.as_ref()?.get()).ok()?;
    let sequence = detection.sequence?;
    Some(AttackSequence {
        actors: sequence.actors.iter().filter_map(|a| a.user.as_ref().and_then(actor_entity)).collect(),
        signals: sequence.signals.into_iter().filter_map(|s| s.id).collect(),
    })
}

/// Whether a finding is one of the sequence's signals. A signal of type FINDING names the
/// GuardDuty finding; Security Hub's finding Id is that finding's ARN, which ends in
/// `/finding/<id>`, so both forms match.
pub(super) fn is_signal_of(finding: &Finding, signals: &BTreeSet<String>) -> bool {
    signals.contains(&finding.id) || finding.id.rsplit_once("/finding/").is_some_and(|(_, id)| signals.contains(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventKind;
    use crate::core::select::test_support::{candidate, finding, guardduty, plan};
    use serde_json::json;

    #[test]
    fn actors_name_users_and_roles_unambiguously_or_are_left_out() {
        let user = |u: serde_json::Value| json!({"Id": "a", "User": u});
        let sequence = finding(
            json!([]),
            json!({"Detection": {"Sequence": {"Uid": "s", "Actors": [
                user(json!({"Uid": "arn:aws:iam::111122223333:user/alice"})),
                user(json!({"Uid": "arn:aws:iam::111122223333:role/app"})),
                user(json!({"Uid": "arn:aws:sts::111122223333:assumed-role/deploy/session-1"})),
                user(json!({"Name": "carol", "Type": "IAMUser", "Account": {"Uid": "111122223333"}})),
                user(json!({"Name": "root", "Type": "Root", "Account": {"Uid": "111122223333"}})),
                user(json!({"Name": "dave", "Type": "IAMUser"})),
                user(json!({"Uid": "arn:aws:sts::111122223333:federated-user/erin"})),
                json!({"Id": "no-user"})],
                "Signals": [{"Id": "sig1"}, {"Type": "FINDING"}]}}}),
        );
        let found = attack_sequence(&sequence).unwrap();
        let arns: Vec<&str> = found.actors.iter().map(|e| e.arn.as_str()).collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::111122223333:role/app",
                "arn:aws:iam::111122223333:role/deploy",
                "arn:aws:iam::111122223333:user/alice",
                "arn:aws:iam::111122223333:user/carol"
            ]
        );
        assert_eq!(found.signals, BTreeSet::from(["sig1".to_owned()]));
        assert_eq!(attack_sequence(&finding(json!([]), json!({}))), None, "not a sequence");
        let signal =
            finding(json!([]), json!({"Id": "arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/sig1"}));
        assert!(is_signal_of(&signal, &found.signals));
        assert!(!is_signal_of(&finding(json!([]), json!({"Id": "sig2"})), &found.signals));
    }

    #[test]
    fn an_attack_sequence_investigates_each_actor_once_and_its_signals_join() {
        let role = "arn:aws:iam::111122223333:role/deploy";
        let sequence = finding(
            json!([]),
            json!({"Id": "arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/seq",
                   "FirstObservedAt": "2026-01-04T00:00:00Z", "LastObservedAt": "2026-01-04T06:00:00Z",
                   "Severity": {"Label": "CRITICAL"},
                   "Detection": {"Sequence": {"Uid": "s",
                       "Actors": [{"Id": "a", "User": {"Uid": "arn:aws:sts::111122223333:assumed-role/deploy/sess", "Type": "AssumedRole"}},
                                  {"Id": "b", "User": {"Name": "carol", "Type": "IAMUser", "Account": {"Uid": "111122223333"}}}],
                       "Signals": [{"Id": "sig1", "Type": "FINDING"}]}}}),
        );
        // A signal whose own resource resolves to another entity still joins the actors' jobs;
        // a finding of one of the actors that is not a signal joins by entity.
        let signal = finding(
            json!([{"Type": "AwsIamUser", "Id": "arn:aws:iam::111122223333:user/someone-else"}]),
            json!({"Id": "arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/sig1",
                   "FirstObservedAt": "2026-01-04T01:00:00Z", "LastObservedAt": "2026-01-04T02:00:00Z"}),
        );
        let other_signal = guardduty(
            "arn:aws:guardduty:us-east-1:111122223333:detector/d/finding/sig2",
            role,
            "2026-01-04T03:00:00Z",
            "2026-01-04T04:00:00Z",
            "HIGH",
        );
        let c = vec![
            candidate(0, signal, EventKind::Imported),
            candidate(1, sequence, EventKind::Imported),
            candidate(2, other_signal, EventKind::Imported),
        ];
        let selection = plan(&c);
        let jobs: Vec<(&str, usize)> =
            selection.jobs.iter().map(|(r, _)| (r.entity_arn.as_str(), r.findings.len())).collect();
        assert_eq!(
            jobs,
            vec![("arn:aws:iam::111122223333:role/deploy", 3), ("arn:aws:iam::111122223333:user/carol", 2)]
        );
    }
}
