//! The pure middle of every write: screen findings (loop guard), dedup them, decide whether a
//! finding is current, and group the others into the fewest update requests: Σ over distinct
//! payloads of ⌈findings / 100⌉. The stream, the sweep and the investigator all come through here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::core::comment::{self, CommentOwner};
use crate::core::enrich::{self, AccountEnrichment, Addendum, EnrichmentPayload};
use crate::core::event::Candidate;
use crate::core::finding::OcsfFindingId;
use crate::core::finding::{self, Finding, FindingId, Hub};
use crate::core::outcome::SkipReason;
use crate::core::select::{self, Asks};

/// Security Hub's cap on FindingIdentifiers per BatchUpdateFindings request.
pub const MAX_FINDINGS_PER_UPDATE: usize = 100;

/// Where a path got a finding from, which decides what the loop guard may assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An event (the stream): a complete enrichment of ours is our own write coming back, and
    /// is skipped before any lookup is spent on it. That is the loop guard.
    Event,
    /// Read from the hub (the sweep, the investigator): a complete enrichment of ours may be
    /// stale, so it goes on to be checked against the account's current rendering (`is_current`).
    Hub,
}

/// Findings that need no work at all, before any lookup is spent on them.
pub fn screen(finding: &Finding, origin: Origin) -> Option<SkipReason> {
    let guard = origin == Origin::Event;
    if let Some(ocsf) = &finding.ocsf {
        match comment::owner(ocsf.comment.as_deref()) {
            CommentOwner::OursComplete if guard => return Some(SkipReason::AlreadyEnriched),
            CommentOwner::Foreign => return Some(SkipReason::ForeignComment),
            CommentOwner::OursComplete | CommentOwner::Empty | CommentOwner::OursPending => {}
        }
    }
    if guard
        && finding.user_defined_fields.get(enrich::keys::FINDING_ENRICHED).map(String::as_str)
            == Some(enrich::ENRICHED_COMPLETE)
    {
        return Some(SkipReason::AlreadyEnriched);
    }
    if finding.is_archived() {
        return Some(SkipReason::Archived);
    }
    if !finding::is_account_id(&finding.aws_account_id) {
        return Some(SkipReason::InvalidAccountId);
    }
    None
}

/// (hub, account, id, product): what "the same finding" means for dedup.
type DedupKey<'a> = (Hub, &'a str, &'a str, &'a str);

/// Splits candidates into the ones to keep and the superseded ones. For each (ProductArn, Id)
/// the latest UpdatedAt wins; on a tie, or without timestamps, the later one in the batch wins,
/// since Kinesis keeps order within an account's shard.
pub fn dedup(candidates: &[Candidate], eligible: impl IntoIterator<Item = usize>) -> (Vec<usize>, Vec<usize>) {
    let mut latest: HashMap<DedupKey, (usize, Option<i64>)> = HashMap::new();
    let mut superseded = Vec::new();
    for index in eligible {
        let finding = &candidates[index].finding;
        let updated = finding.updated_at_millis();
        match latest.entry(finding.dedup_key()) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((index, updated));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let (held, held_updated) = *slot.get();
                if updated >= held_updated {
                    superseded.push(held);
                    slot.insert((index, updated));
                } else {
                    superseded.push(index);
                }
            }
        }
    }
    let mut kept: Vec<usize> = latest.into_values().map(|(index, _)| index).collect();
    kept.sort_unstable();
    superseded.sort_unstable();
    (kept, superseded)
}

/// What triage decided for a batch.
#[derive(Debug, Default)]
pub struct Triage {
    pub kept: Vec<usize>,
    pub skipped: Vec<(usize, SkipReason)>,
    /// What every copy of each finding asked for, whichever copy was kept.
    pub asks: HashMap<FindingId, Asks>,
}

/// Screens and dedups a batch's candidates: the ones to keep, a skip reason for each of the
/// others, and what all copies of each finding asked for. A finding an analyst chose a custom
/// action on is re-enriched even if already enriched, whichever of its copies is kept.
pub fn triage(candidates: &[Candidate]) -> Triage {
    let asks = select::asks(candidates);
    let mut skipped = Vec::new();
    let mut eligible = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        let reenrich = || asks.get(&candidate.finding.identifier()).is_some_and(Asks::by_custom_action);
        match screen(&candidate.finding, Origin::Event) {
            Some(SkipReason::AlreadyEnriched) if reenrich() => eligible.push(i),
            Some(reason) => skipped.push((i, reason)),
            None => eligible.push(i),
        }
    }
    let (kept, superseded) = dedup(candidates, eligible);
    skipped.extend(superseded.into_iter().map(|i| (i, SkipReason::Superseded)));
    Triage { kept, skipped, asks }
}

/// One BatchUpdateFindings request, from plan to writer: a payload and at most 100 findings,
/// each with the caller's index for it (the candidate, for the handler), so outcomes come back
/// already keyed.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub payload: Arc<EnrichmentPayload>,
    pub findings: Vec<(usize, FindingId)>,
}

impl UpdateRequest {
    /// The caller's indices of this request's findings.
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.findings.iter().map(|(member, _)| *member)
    }
}

/// Cuts each payload's findings into requests of at most 100: Σ ⌈n / 100⌉ requests, the least
/// the API allows.
pub fn requests_for(groups: BTreeMap<Arc<EnrichmentPayload>, Vec<(usize, FindingId)>>) -> Vec<UpdateRequest> {
    let mut requests = Vec::new();
    for (payload, findings) in groups {
        for chunk in findings.chunks(MAX_FINDINGS_PER_UPDATE) {
            requests.push(UpdateRequest { payload: Arc::clone(&payload), findings: chunk.to_vec() });
        }
    }
    requests
}

/// What grouping decided for the kept findings.
#[derive(Debug, Default)]
pub struct GroupedUpdates {
    pub requests: Vec<UpdateRequest>,
    pub unchanged: Vec<usize>,
    /// Σ ⌈findings per distinct payload / 100⌉: the fewest calls any writer could make.
    pub minimum_calls: usize,
    /// Pairs left out by the 50-pair cap, summed over findings.
    pub fields_dropped: usize,
}

/// True when the finding already carries exactly what its account's enrichment would write,
/// complete: on either hub, the one test of "current" every path uses.
pub fn is_current(finding: &Finding, enrichment: &AccountEnrichment) -> bool {
    match &finding.ocsf {
        Some(ocsf) => enrichment.is_complete() && ocsf.comment.as_deref() == Some(enrichment.comment.as_str()),
        None => enrichment.is_current_on(&finding.user_defined_fields),
    }
}

/// True when the enrichment is `Partial` and the finding already carries a `Partial`
/// enrichment of ours: writing it again gains nothing (the account is still not resolved), and
/// what the partial text says (the finding's own account name) differs with the findings a path
/// happens to read together. So `Partial` never replaces `Partial`, on any path: the loop guard
/// for partial enrichment, and what keeps the stream and the sweep from rewriting each other.
pub fn is_still_partial(finding: &Finding, enrichment: &AccountEnrichment) -> bool {
    if enrichment.is_complete() {
        return false;
    }
    match &finding.ocsf {
        Some(ocsf) => comment::owner(ocsf.comment.as_deref()) == CommentOwner::OursPending,
        None => {
            finding.user_defined_fields.get(enrich::keys::FINDING_ENRICHED).map(String::as_str)
                == Some(enrich::ENRICHED_PARTIAL)
        }
    }
}

/// Groups kept findings by identical payload and cuts each group into requests of ≤ 100.
/// The payload is built once per (account, foreign fields, note), never per finding: the note
/// is the account's, or the account's followed by an investigation part, which a job's
/// findings share. With an `addendum` (the investigator's verdict), a finding whose account
/// has no enrichment keeps what it carries, with the verdict added.
pub fn group_updates(
    candidates: &[Candidate],
    kept: &[usize],
    enrichments: &HashMap<String, AccountEnrichment>,
    addendum: Option<&Addendum>,
) -> GroupedUpdates {
    type GroupKey<'a> = (&'a str, BTreeMap<String, String>, Option<String>);
    let mut payloads: HashMap<GroupKey, Arc<EnrichmentPayload>> = HashMap::new();
    // BTreeMap keeps request order deterministic, which keeps logs and tests stable.
    let mut groups: BTreeMap<Arc<EnrichmentPayload>, Vec<(usize, FindingId)>> = BTreeMap::new();
    let mut grouped = GroupedUpdates::default();
    let verdict = addendum.map(|a| a.note.as_str());
    for &index in kept {
        let finding = &candidates[index].finding;
        let Some(account) = enrichments.get(&finding.aws_account_id) else {
            if let Some(addendum) = addendum {
                let payload = Arc::new(addendum.kept_on(finding));
                if !is_unchanged(finding, &payload) {
                    groups.entry(payload).or_default().push((index, finding.identifier()));
                } else {
                    grouped.unchanged.push(index);
                }
            }
            continue;
        };
        let mut foreign = account.foreign_fields(&finding.user_defined_fields);
        if let Some(addendum) = addendum {
            foreign.extend(addendum.fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        }
        let note = account.note_for(finding.note.as_ref(), verdict);
        let key = (account.account_id.as_str(), foreign, note);
        let payload = match payloads.get(&key) {
            Some(payload) => Arc::clone(payload),
            None => {
                let rendered = account.payload(&key.1, key.2.clone());
                grouped.fields_dropped += rendered.fields_dropped;
                let payload = Arc::new(rendered.payload);
                payloads.insert(key, Arc::clone(&payload));
                payload
            }
        };
        if is_unchanged(finding, &payload) {
            grouped.unchanged.push(index);
            continue;
        }
        groups.entry(payload).or_default().push((index, finding.identifier()));
    }
    grouped.minimum_calls = minimum_requests(groups.values().map(Vec::len));
    grouped.requests = requests_for(groups);
    grouped
}

/// One BatchUpdateFindingsV2 request: one comment and at most 100 findings, all named the same
/// way (the API takes `MetadataUids` or `FindingIdentifiers`, never both).
#[derive(Debug, Clone)]
pub struct UpdateRequestV2 {
    pub comment: Arc<str>,
    /// The comment carries the pending marker (organization details to come).
    pub partial: bool,
    pub findings: Vec<(usize, OcsfFindingId)>,
}

impl UpdateRequestV2 {
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.findings.iter().map(|(member, _)| *member)
    }
}

/// BatchUpdateFindingsV2's cap on MetadataUids and on FindingIdentifiers (the service model's
/// list `max`).
pub const MAX_FINDINGS_PER_UPDATE_V2: usize = 100;

/// What grouping decided for kept OCSF findings.
#[derive(Debug, Default)]
pub struct GroupedComments {
    pub requests: Vec<UpdateRequestV2>,
    pub unchanged: Vec<usize>,
    /// Σ ⌈findings per distinct (comment, identifier kind) / 100⌉.
    pub minimum_calls: usize,
}

/// Groups kept OCSF findings by identical comment (one per account) and identifier kind, and
/// cuts each group into requests of ≤ 100. A finding that already carries the comment we would
/// write is not sent again (the loop guard for pending comments).
pub fn group_comments(
    candidates: &[Candidate],
    kept: &[usize],
    enrichments: &HashMap<String, AccountEnrichment>,
) -> GroupedComments {
    // (comment, named by metadata.uid, partial) → the findings that share one request.
    type CommentKey = (Arc<str>, bool, bool);
    let mut groups: BTreeMap<CommentKey, Vec<(usize, OcsfFindingId)>> = BTreeMap::new();
    let mut comments: HashMap<&str, Arc<str>> = HashMap::new();
    let mut grouped = GroupedComments::default();
    for &index in kept {
        let finding = &candidates[index].finding;
        let (Some(ocsf), Some(account)) = (&finding.ocsf, enrichments.get(&finding.aws_account_id)) else {
            continue;
        };
        if ocsf.comment.as_deref() == Some(account.comment.as_str()) {
            grouped.unchanged.push(index);
            continue;
        }
        let comment = Arc::clone(
            comments.entry(account.account_id.as_str()).or_insert_with(|| Arc::from(account.comment.as_str())),
        );
        let by_metadata_uid = matches!(ocsf.id, OcsfFindingId::MetadataUid(_));
        let partial = account.completeness == enrich::Completeness::Partial;
        groups.entry((comment, by_metadata_uid, partial)).or_default().push((index, ocsf.id.clone()));
    }
    grouped.minimum_calls = groups.values().map(|g| g.len().div_ceil(MAX_FINDINGS_PER_UPDATE_V2)).sum();
    for ((comment, _, partial), findings) in groups {
        for chunk in findings.chunks(MAX_FINDINGS_PER_UPDATE_V2) {
            grouped.requests.push(UpdateRequestV2 { comment: Arc::clone(&comment), partial, findings: chunk.to_vec() });
        }
    }
    grouped
}

/// A second loop guard: an update that changes nothing is never sent, so a finding left
/// `Partial` while Organizations is unreachable does not bounce through the stream forever.
fn is_unchanged(finding: &Finding, payload: &EnrichmentPayload) -> bool {
    let note_same = match &payload.note {
        None => true,
        Some(text) => finding.note.as_ref().is_some_and(|n| &n.text == text),
    };
    note_same && finding.user_defined_fields == payload.fields
}

/// The least number of requests any writer could use for these groups: Σ ⌈n / 100⌉.
pub fn minimum_requests(group_sizes: impl IntoIterator<Item = usize>) -> usize {
    group_sizes.into_iter().map(|n| n.div_ceil(MAX_FINDINGS_PER_UPDATE)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::account::AccountMetadata;
    use crate::core::enrich::{Completeness, Rendering};
    use crate::core::event::EventKind;
    use proptest::prelude::*;

    fn finding(id: &str, account: &str, updated: &str) -> Finding {
        serde_json::from_value(serde_json::json!({
            "Id": id, "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
            "AwsAccountId": account, "UpdatedAt": updated
        }))
        .unwrap()
    }

    fn candidates(findings: Vec<Finding>) -> Vec<Candidate> {
        findings
            .into_iter()
            .enumerate()
            .map(|(record, finding)| Candidate { record, finding, kind: EventKind::Imported })
            .collect()
    }

    fn enrichments(accounts: &[&str]) -> HashMap<String, AccountEnrichment> {
        accounts
            .iter()
            .map(|a| {
                let meta = AccountMetadata::from_finding_name(a, Some("n"));
                (a.to_string(), Rendering::default().account(&meta, Completeness::Complete))
            })
            .collect()
    }

    #[test]
    fn loop_guard_archived_and_bad_accounts_are_screened() {
        let mut f = finding("a", "111122223333", "2026-01-01T00:00:00Z");
        assert_eq!(screen(&f, Origin::Event), None);
        f.user_defined_fields.insert("findingEnriched".into(), "True".into());
        assert_eq!(screen(&f, Origin::Event), Some(SkipReason::AlreadyEnriched));
        assert_eq!(screen(&f, Origin::Hub), None, "read from the hub, ours is checked for currency instead");
        f.user_defined_fields.insert("findingEnriched".into(), "Partial".into());
        assert_eq!(screen(&f, Origin::Event), None, "partial enrichment is completed, not skipped");
        f.record_state = Some("ARCHIVED".into());
        assert_eq!(screen(&f, Origin::Event), Some(SkipReason::Archived));
        assert_eq!(screen(&f, Origin::Hub), Some(SkipReason::Archived));
        assert_eq!(screen(&finding("a", "not-an-account", ""), Origin::Hub), Some(SkipReason::InvalidAccountId));
    }

    #[test]
    fn dedup_keeps_the_latest_update() {
        let c = candidates(vec![
            finding("a", "111122223333", "2026-01-01T00:00:05Z"),
            finding("a", "111122223333", "2026-01-01T00:00:01.500Z"),
            finding("b", "111122223333", "2026-01-01T00:00:00Z"),
            finding("b", "111122223333", "2026-01-01T00:00:00Z"),
        ]);
        let (kept, superseded) = dedup(&c, 0..c.len());
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(superseded, vec![1, 2]);
    }

    #[test]
    fn one_payload_per_account_and_at_most_100_per_request() {
        let mut findings = Vec::new();
        for i in 0..250 {
            findings.push(finding(&format!("a{i}"), "111122223333", "2026-01-01T00:00:00Z"));
        }
        for i in 0..3 {
            findings.push(finding(&format!("b{i}"), "444455556666", "2026-01-01T00:00:00Z"));
        }
        let c = candidates(findings);
        let kept: Vec<usize> = (0..c.len()).collect();
        let grouped = group_updates(&c, &kept, &enrichments(&["111122223333", "444455556666"]), None);
        let sizes: Vec<usize> = grouped.requests.iter().map(|r| r.findings.len()).collect();
        assert_eq!(grouped.requests.len(), 4);
        assert_eq!(grouped.requests.len(), minimum_requests([250, 3]));
        assert_eq!(grouped.minimum_calls, 4);
        assert!(sizes.iter().all(|&n| n <= MAX_FINDINGS_PER_UPDATE));
        assert_eq!(sizes.iter().sum::<usize>(), 253);
    }

    #[test]
    fn foreign_fields_split_groups_and_identical_updates_are_not_sent() {
        let mut with_ticket = finding("t", "111122223333", "2026-01-01T00:00:00Z");
        with_ticket.user_defined_fields.insert("ticket".into(), "SEC-9".into());
        let plain = finding("p", "111122223333", "2026-01-01T00:00:00Z");
        let c = candidates(vec![with_ticket, plain]);
        let e = enrichments(&["111122223333"]);
        let grouped = group_updates(&c, &[0, 1], &e, None);
        assert_eq!(grouped.requests.len(), 2);
        let ticketed: Vec<_> = grouped.requests.iter().filter(|r| r.payload.fields.contains_key("ticket")).collect();
        assert_eq!(ticketed.len(), 1);
        assert_eq!(ticketed[0].members().collect::<Vec<_>>(), vec![0]);
        let plain = grouped.requests.iter().find(|r| r.members().eq([1])).unwrap();

        // Feed the written payload back as the finding's state: nothing left to do.
        let mut done = finding("p", "111122223333", "2026-01-01T00:00:00Z");
        let payload = &plain.payload;
        done.user_defined_fields = payload.fields.clone();
        done.note = Some(crate::core::finding::Note {
            text: payload.note.clone().unwrap(),
            updated_by: enrich::UPDATED_BY.into(),
        });
        let again = candidates(vec![done]);
        let regrouped = group_updates(&again, &[0], &e, None);
        assert!(regrouped.requests.is_empty());
        assert_eq!(regrouped.unchanged, vec![0]);
    }

    proptest! {
        #[test]
        fn requests_meet_the_lower_bound_and_cover_every_finding(
            rows in proptest::collection::vec((0usize..7, 0usize..40, proptest::bool::ANY), 0..600)
        ) {
            let accounts: Vec<String> = (0..7).map(|a| format!("1000000000{a:02}")).collect();
            let findings: Vec<Finding> = rows.iter().map(|(a, id, ticket)| {
                let mut f = finding(&format!("f{id}"), &accounts[*a], "2026-01-01T00:00:00Z");
                if *ticket { f.user_defined_fields.insert("ticket".into(), "1".into()); }
                f
            }).collect();
            let c = candidates(findings);
            let (kept, superseded) = dedup(&c, 0..c.len());
            prop_assert_eq!(kept.len() + superseded.len(), c.len());
            let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
            let grouped = group_updates(&c, &kept, &enrichments(&refs), None);
            let mut covered: Vec<usize> = grouped.requests.iter().flat_map(|r| r.members().collect::<Vec<_>>()).collect();
            covered.sort_unstable();
            prop_assert_eq!(&covered, &kept);
            let mut sizes: HashMap<&EnrichmentPayload, usize> = HashMap::new();
            for r in &grouped.requests {
                prop_assert!(r.findings.len() <= MAX_FINDINGS_PER_UPDATE);
                *sizes.entry(&r.payload).or_default() += r.findings.len();
            }
            prop_assert_eq!(grouped.requests.len(), minimum_requests(sizes.values().copied()));
            prop_assert_eq!(grouped.requests.len(), grouped.minimum_calls);
        }
    }
}
