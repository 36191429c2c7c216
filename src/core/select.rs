//! Which findings get a Detective investigation, of which IAM entities, and how findings that
//! share an actor join one job. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::core::enrich::keys;
use crate::core::event::{Candidate, EventKind};
use crate::core::finding::{Finding, FindingId};
use crate::core::investigation::{JobRequest, MAX_SCOPE_SECONDS, NOT_COVERED};
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
fn is_signal_of(finding: &Finding, signals: &BTreeSet<String>) -> bool {
    signals.contains(&finding.id) || finding.id.rsplit_once("/finding/").is_some_and(|(_, id)| signals.contains(id))
}

/// A finding's window: from the lookback before its first observation (snapped to the UTC
/// day, so that later batches seeing the same actor the same day join the same job) to its
/// last observation.
fn window(finding: &Finding, lookback_hours: i64, now_millis: i64) -> (i64, i64) {
    let start = scope_start(finding, lookback_hours, now_millis).div_euclid(86_400) * 86_400;
    let last = [&finding.last_observed_at, &finding.updated_at, &finding.first_observed_at]
        .into_iter()
        .find_map(|t| t.as_deref().and_then(parse_timestamp_millis))
        .unwrap_or(now_millis)
        .min(now_millis)
        / 1000;
    (start, last.max(start))
}

/// What selection decided for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// One request per actor and window, with the candidates it was made from.
    pub jobs: Vec<(JobRequest, Vec<usize>)>,
    pub findings_selected: usize,
    /// Of those, asked for by a person (custom action or `investigate=true`).
    pub explicit: usize,
    pub unresolved: Vec<(usize, Unresolvable)>,
    /// Findings that joined a job another finding of the batch also asked for.
    pub findings_joined: usize,
}

struct Item {
    start: i64,
    end: i64,
    finding: FindingId,
    candidate: usize,
    priority: u8,
}

/// Chooses the investigations of a batch: findings that share an entity and an overlapping
/// window join one job, whose window is widened to cover them all within
/// [`MAX_SCOPE_SECONDS`]; an attack sequence's actors are investigated once each, and the
/// sequence's signal findings join the actors' jobs instead of starting their own.
///
/// `eligible` may hold several copies of a finding; the latest (by `UpdatedAt`) stands for
/// it, and `asks` carries what every copy asked for.
pub fn plan_jobs(
    candidates: &[Candidate],
    eligible: &[usize],
    asks: &HashMap<FindingId, Asks>,
    criteria: &Criteria,
    lookback_hours: i64,
    now_millis: i64,
) -> Selection {
    let mut chosen: BTreeMap<FindingId, usize> = BTreeMap::new();
    for &i in eligible {
        let finding = &candidates[i].finding;
        let slot = chosen.entry(finding.identifier()).or_insert(i);
        if finding.updated_at_millis() > candidates[*slot].finding.updated_at_millis() {
            *slot = i;
        }
    }
    let empty = Asks::default();
    let mut selection = Selection::default();
    let mut selected: Vec<(usize, Trigger)> = Vec::new();
    let mut sequences: Vec<AttackSequence> = Vec::new();
    for (id, &i) in &chosen {
        let finding = &candidates[i].finding;
        let Some(trigger) = trigger(finding, asks.get(id).unwrap_or(&empty), criteria) else {
            continue;
        };
        selection.findings_selected += 1;
        selection.explicit += usize::from(trigger.is_explicit());
        sequences.extend(attack_sequence(finding));
        selected.push((i, trigger));
    }

    let mut by_entity: BTreeMap<Entity, Vec<Item>> = BTreeMap::new();
    for (i, trigger) in selected {
        let finding = &candidates[i].finding;
        let (mut found, unresolved) = entities(finding);
        if let Some(sequence) = attack_sequence(finding) {
            found.extend(sequence.actors);
        }
        // A signal of a sequence in this batch is investigated as the sequence's actors.
        let actors: BTreeSet<Entity> = sequences
            .iter()
            .filter(|s| !s.actors.is_empty() && is_signal_of(finding, &s.signals))
            .flat_map(|s| s.actors.iter().cloned())
            .collect();
        if !actors.is_empty() {
            found = actors;
        }
        selection.unresolved.extend(unresolved.into_iter().map(|u| (i, u)));
        let (start, end) = window(finding, lookback_hours, now_millis);
        for entity in found {
            by_entity.entry(entity).or_default().push(Item {
                start,
                end,
                finding: finding.identifier(),
                candidate: i,
                priority: priority(finding, trigger),
            });
        }
    }

    for (entity, mut items) in by_entity {
        items.sort_by(|a, b| (a.start, a.end, &a.finding).cmp(&(b.start, b.end, &b.finding)));
        let mut current: Option<(JobRequest, i64, Vec<usize>)> = None;
        for item in items {
            if let Some((request, end, members)) = &mut current {
                let widened = (*end).max(item.end);
                if item.start <= *end && widened - request.scope_start <= MAX_SCOPE_SECONDS {
                    *end = widened;
                    request.priority = request.priority.max(item.priority);
                    if request.findings.insert(item.finding) {
                        selection.findings_joined += 1;
                    }
                    members.push(item.candidate);
                    continue;
                }
            }
            selection.jobs.extend(current.take().map(|(request, _, members)| (request, members)));
            let request = JobRequest {
                entity_arn: entity.arn.clone(),
                scope_start: item.start,
                findings: BTreeSet::from([item.finding]),
                priority: item.priority,
            };
            current = Some((request, item.end, vec![item.candidate]));
        }
        selection.jobs.extend(current.map(|(request, _, members)| (request, members)));
    }
    selection
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
    use proptest::prelude::*;
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

    fn candidate(record: usize, finding: Finding, kind: EventKind) -> Candidate {
        Candidate { record, finding, kind }
    }

    fn guardduty(id: &str, entity: &str, first: &str, last: &str, severity: &str) -> Finding {
        finding(
            json!([{"Type": if entity.contains(":user/") { "AwsIamUser" } else { "AwsIamRole" }, "Id": entity}]),
            json!({"Id": id, "FirstObservedAt": first, "LastObservedAt": last, "UpdatedAt": last,
                   "Severity": {"Label": severity}}),
        )
    }

    const NOW: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

    fn plan(candidates: &[Candidate]) -> Selection {
        let all: Vec<usize> = (0..candidates.len()).collect();
        plan_jobs(candidates, &all, &asks(candidates), &Criteria::default(), 24, NOW)
    }

    #[test]
    fn findings_of_one_actor_with_overlapping_windows_join_one_job() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let bob = "arn:aws:iam::111122223333:user/bob";
        let c = vec![
            candidate(
                0,
                guardduty("a1", alice, "2026-01-03T01:10:00Z", "2026-01-03T02:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
            candidate(
                1,
                guardduty("a2", alice, "2026-01-03T09:40:00Z", "2026-01-03T10:00:00Z", "MEDIUM"),
                EventKind::Imported,
            ),
            candidate(
                2,
                guardduty("a3", alice, "2026-01-04T03:00:00Z", "2026-01-04T04:00:00Z", "CRITICAL"),
                EventKind::Imported,
            ),
            candidate(
                3,
                guardduty("b1", bob, "2026-01-03T01:10:00Z", "2026-01-03T02:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
        ];
        let selection = plan(&c);
        assert_eq!(selection.findings_selected, 4);
        let jobs: Vec<(&str, usize, u8)> =
            selection.jobs.iter().map(|(r, _)| (r.entity_arn.as_str(), r.findings.len(), r.priority)).collect();
        assert_eq!(jobs, vec![(alice, 3, 4), (bob, 1, 3)], "three hours apart and a day later: one job for alice");
        assert_eq!(selection.findings_joined, 2);
        let (alice_job, _) = &selection.jobs[0];
        assert_eq!(alice_job.scope_start, 1_767_312_000, "the lookback before the first finding, by UTC day");
    }

    #[test]
    fn windows_that_do_not_overlap_or_outgrow_the_scope_limit_stay_apart() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let c = vec![
            candidate(
                0,
                guardduty("old", alice, "2025-11-01T00:00:00Z", "2025-11-01T01:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
            candidate(
                1,
                guardduty("new", alice, "2026-01-04T00:00:00Z", "2026-01-04T01:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
        ];
        let selection = plan(&c);
        assert_eq!(selection.jobs.len(), 2);
        assert_eq!(selection.findings_joined, 0);
        let long = vec![
            candidate(
                0,
                guardduty("long", alice, "2025-11-01T00:00:00Z", "2026-01-04T00:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
            candidate(
                1,
                guardduty("late", alice, "2026-01-03T00:00:00Z", "2026-01-04T01:00:00Z", "HIGH"),
                EventKind::Imported,
            ),
        ];
        assert_eq!(plan(&long).jobs.len(), 2, "a joined window would exceed {MAX_SCOPE_SECONDS} s");
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

    /// The copies of one finding a batch can carry: the Imported event, its redelivery, an
    /// automation rule's `investigate=true` update, and the custom action.
    fn copies() -> Vec<Candidate> {
        let role = "arn:aws:iam::111122223333:role/app";
        let inspector = |id: &str, updated: &str, fields: serde_json::Value| {
            finding(
                json!([{"Type": "AwsIamRole", "Id": role}]),
                json!({"Id": id, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/inspector",
                       "FirstObservedAt": "2026-01-04T00:00:00Z", "UpdatedAt": updated, "UserDefinedFields": fields}),
            )
        };
        let action = EventKind::CustomAction { action_name: "investigate".into() };
        vec![
            candidate(0, inspector("x", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(1, inspector("x", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(2, inspector("x", "2026-01-04T01:00:00Z", json!({})), action.clone()),
            candidate(3, inspector("y", "2026-01-04T01:00:00Z", json!({})), EventKind::Imported),
            candidate(4, inspector("y", "2026-01-04T02:00:00Z", json!({"investigate": "true"})), EventKind::Imported),
            candidate(5, inspector("y", "2026-01-04T02:00:00Z", json!({"investigate": "true"})), EventKind::Imported),
            candidate(6, inspector("z", "2026-01-04T01:00:00Z", json!({"findingEnriched": "True"})), action),
            candidate(
                7,
                inspector("z", "2026-01-04T01:00:00Z", json!({"findingEnriched": "True"})),
                EventKind::Imported,
            ),
        ]
    }

    /// The jobs a batch asks for, as the handler computes them (triage, then the kept and the
    /// still-investigable skipped findings), without the batch positions.
    fn jobs_of(batch: &[Candidate]) -> (Vec<JobRequest>, usize, BTreeSet<String>) {
        let triage = crate::core::plan::triage(batch);
        let mut eligible = triage.kept.clone();
        eligible.extend(
            triage
                .skipped
                .iter()
                .filter(|(_, r)| may_investigate(&FindingOutcome::Skipped(r.clone())))
                .map(|(i, _)| *i),
        );
        let kept: BTreeSet<String> = triage.kept.iter().map(|&i| batch[i].finding.id.clone()).collect();
        let selection = plan_jobs(batch, &eligible, &triage.asks, &Criteria::default(), 24, NOW);
        (selection.jobs.into_iter().map(|(r, _)| r).collect(), selection.explicit, kept)
    }

    #[test]
    fn explicit_requests_survive_dedup() {
        let (jobs, explicit, kept) = jobs_of(&copies());
        assert_eq!(jobs.len(), 1);
        let ids: Vec<&str> = jobs[0].findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["x", "y", "z"]);
        assert_eq!(explicit, 3, "inspector findings are investigated only because someone asked");
        assert!(kept.contains("z"), "the custom action re-enriches an already enriched finding");
    }

    proptest::proptest! {
        #[test]
        fn any_interleaving_of_copies_and_duplicates_gives_the_same_jobs(
            order in Just((0..8).collect::<Vec<usize>>()).prop_shuffle(),
            extra in proptest::collection::vec(0usize..8, 0..6),
        ) {
            let all = copies();
            let batch: Vec<Candidate> = order
                .iter()
                .chain(extra.iter())
                .enumerate()
                .map(|(record, &i)| Candidate { record, ..all[i].clone() })
                .collect();
            proptest::prop_assert_eq!(jobs_of(&batch), jobs_of(&all));
        }
    }
}
