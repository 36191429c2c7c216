//! Account metadata + finding → the Note and UserDefinedFields we write, within Security Hub's
//! limits. Pure: no I/O, deterministic, so that equal inputs give equal payloads and group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::core::account::{AccountMetadata, AccountRecord, AccountState, Contact, ContactLookup};
use crate::core::comment;
use crate::core::finding::{Finding, Note};
use crate::core::routing::{Routing, RoutingRules};

// The limits and keys live in `fields`, a leaf the comment and routing share with us; named
// here too, where the rendering that applies them is.
pub use crate::core::fields::{
    Completeness, FIELD_KEY_MAX_CHARS, FIELD_VALUE_MAX_CHARS, FIELDS_MAX_PAIRS, NOTE_MAX_CHARS, keys, truncate_chars,
};

/// `Note.UpdatedBy` of every note we write; a note by anyone else is never overwritten.
pub const UPDATED_BY: &str = "securityhub-enricher";

/// `findingEnriched` values. `True` is the loop guard the EventBridge rule excludes.
pub const ENRICHED_COMPLETE: &str = "True";
/// Written when Organizations could not be asked in time: the finding carries what we know and
/// is completed by the next event for it (see README, "Degraded enrichment").
pub const ENRICHED_PARTIAL: &str = "Partial";

/// Stands in for an empty tag value: Security Hub rejects values without a non-space character.
pub const EMPTY_VALUE: &str = "(empty)";
/// The value of a tag key we wrote earlier whose tag the account no longer has. Written rather
/// than the key left out, because whether BatchUpdateFindings replaces or merges
/// UserDefinedFields is not documented: under either, the old value is gone. A key holding this
/// value is ours; if the tag comes back, its value replaces the tombstone.
pub const TOMBSTONE: &str = "(removed)";

/// The per-account part of the enrichment, built once per account per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEnrichment {
    pub account_id: String,
    pub completeness: Completeness,
    /// Our own fields, most important first: they are kept first when the 50-pair cap bites.
    own_fields: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    pub note: String,
    /// Tags dropped for colliding with a reserved key, an invalid key, or the allowlist.
    pub tags_dropped: usize,
    /// What `keys::ENRICHED_FROM` carries: equal for equal renderings of the account.
    pub fingerprint: String,
    /// `owner`, `environment`, `criticality` as `ROUTING_POLICY` decides them for this account.
    pub routing: Routing,
    /// The new hub's `Comment` for this account's OCSF findings (marked as ours, ≤ 512).
    pub comment: String,
    /// What the enriched-finding event says about the account (no contact details).
    pub summary: AccountSummary,
}

/// The `account` object of an enriched-finding event: identity, place and allowlisted tags,
/// and whether a security contact exists, never who it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountSummary {
    pub id: String,
    pub name: Option<String>,
    pub ou_id: Option<String>,
    pub ou_path: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub has_security_contact: bool,
    /// Organizations' `Account.State`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<AccountState>,
}

/// Which account tags to copy: all of them, or those named in `TAG_KEYS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TagFilter {
    #[default]
    All,
    Only(BTreeSet<String>),
}

impl TagFilter {
    fn allows(&self, key: &str) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Only(keys) => keys.contains(key),
        }
    }
}

fn field_value(value: &str) -> String {
    if value.trim().is_empty() { EMPTY_VALUE.to_owned() } else { truncate_chars(value, FIELD_VALUE_MAX_CHARS) }
}

fn valid_key(key: &str) -> bool {
    !key.trim().is_empty() && key.chars().count() <= FIELD_KEY_MAX_CHARS
}

/// The sample's `securityContact` format, kept byte for byte (note "Phone" has no colon).
pub fn contact_field(contact: &Contact) -> String {
    format!("Name:{} | Title:{} | Email:{} | Phone {}", contact.name, contact.title, contact.email, contact.phone)
}

/// How every path renders an account's enrichment, from the configuration: which tags to copy
/// (`TAG_KEYS`) and how findings are routed (`ROUTING_POLICY`, `OWNER_TAG_KEY`). Built once from
/// the configuration and shared by the stream, the sweep and the investigator: the only way to
/// an `AccountEnrichment`, so that a finding one path wrote is current for every other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendering {
    pub tag_filter: TagFilter,
    pub routing: RoutingRules,
}

impl Rendering {
    /// The enrichment of one account, known this completely.
    pub fn account(&self, account: &AccountMetadata, completeness: Completeness) -> AccountEnrichment {
        AccountEnrichment::render(account, completeness, &self.tag_filter, &self.routing)
    }

    /// The fallback and completeness rule: each account of these findings enriched once, from
    /// what the directory knows (`known`): found → complete; not in the organization → complete
    /// from the finding's own `AwsAccountName`, since that is all there is to know; unknown (no
    /// answer in time) → partial from that name, to be completed later.
    pub fn enrichments<'f, 'r>(
        &self,
        findings: impl IntoIterator<Item = &'f Finding>,
        known: impl Fn(&str) -> Option<&'r AccountRecord>,
    ) -> HashMap<String, AccountEnrichment> {
        let mut fallback_names: HashMap<&str, Option<&str>> = HashMap::new();
        for finding in findings {
            let name = fallback_names.entry(finding.aws_account_id.as_str()).or_insert(None);
            if name.is_none() {
                *name = finding.aws_account_name.as_deref();
            }
        }
        fallback_names
            .into_iter()
            .map(|(account_id, fallback_name)| {
                let from_finding = || AccountMetadata::from_finding_name(account_id, fallback_name);
                let (metadata, completeness) = match known(account_id) {
                    Some(AccountRecord::Found(meta)) => (meta.clone(), Completeness::Complete),
                    Some(AccountRecord::NotFound) => (from_finding(), Completeness::Complete),
                    None => (from_finding(), Completeness::Partial),
                };
                (account_id.to_owned(), self.account(&metadata, completeness))
            })
            .collect()
    }
}

impl AccountEnrichment {
    /// Our fields, note, comment and event summary for the account, with `owner`,
    /// `environment` and `criticality` decided by `rules`. Private: `Rendering` is the way in.
    fn render(
        account: &AccountMetadata,
        completeness: Completeness,
        tag_filter: &TagFilter,
        rules: &RoutingRules,
    ) -> Self {
        let mut own_fields = Vec::with_capacity(9);
        let enriched = match completeness {
            Completeness::Complete => ENRICHED_COMPLETE,
            Completeness::Partial => ENRICHED_PARTIAL,
        };
        own_fields.push((keys::FINDING_ENRICHED.to_owned(), enriched.to_owned()));
        if let Some(name) = &account.name {
            own_fields.push((keys::ACCOUNT_NAME.to_owned(), field_value(name)));
        }
        let path = ou_path_text(account);
        if let Some(parent) = account.parent() {
            // The sample wrote "ROOT" for accounts directly under the root; rules match on it.
            let ou_name = if account.ou_path.len() == 1 { "ROOT" } else { parent.name.as_str() };
            own_fields.push((keys::OU.to_owned(), field_value(ou_name)));
            own_fields.push((keys::OU_ID.to_owned(), field_value(&parent.id)));
            own_fields.push((keys::OU_PATH.to_owned(), field_value(&path)));
        }
        if let ContactLookup::Found(contact) = &account.security_contact {
            own_fields.push((keys::SECURITY_CONTACT.to_owned(), field_value(&contact_field(contact))));
        }
        if let Some(state) = account.state {
            own_fields.push((keys::ACCOUNT_STATE.to_owned(), state.as_str().to_owned()));
        }

        let mut tags = Vec::new();
        let mut tags_dropped = 0;
        for (key, value) in &account.tags {
            if keys::is_reserved(key) || !valid_key(key) || !tag_filter.allows(key) {
                tags_dropped += 1;
                continue;
            }
            tags.push((key.clone(), field_value(value)));
        }

        // Routing reads every tag of the account, not only the allowlisted ones: the owner tag
        // decides routing even when it is not copied.
        let routing = rules.route(&path, &account.tags);
        for (key, value) in routing.pairs() {
            own_fields.push((key.to_owned(), field_value(value)));
        }
        if let Some(list) = tag_key_list(&tags) {
            own_fields.push((keys::ENRICHED_TAG_KEYS.to_owned(), list));
        }
        let note = account_note(account, &path, completeness);
        let fingerprint = fingerprint(&own_fields, &tags, &note);
        own_fields.insert(1, (keys::ENRICHED_FROM.to_owned(), fingerprint.clone()));
        let comment = comment::render(account, &path, &routing, completeness);
        let summary = AccountSummary {
            id: account.account_id.clone(),
            name: account.name.clone(),
            ou_id: account.parent().map(|p| p.id.clone()),
            ou_path: (!path.is_empty()).then(|| path.clone()),
            tags: tags.iter().cloned().collect(),
            has_security_contact: matches!(account.security_contact, ContactLookup::Found(_)),
            state: account.state,
        };
        AccountEnrichment {
            account_id: account.account_id.clone(),
            completeness,
            own_fields,
            tags,
            note,
            tags_dropped,
            fingerprint,
            routing,
            comment,
            summary,
        }
    }

    /// The keys this enrichment writes: an existing field under one of them is ours to replace.
    fn writes_key(&self, key: &str) -> bool {
        keys::ENRICHER_OWNED.contains(&key)
            || self.own_fields.iter().any(|(k, _)| k == key)
            || self.tags.iter().any(|(k, _)| k == key)
    }

    pub fn is_complete(&self) -> bool {
        self.completeness == Completeness::Complete
    }

    /// True when a finding already carries exactly this enrichment, complete: nothing to do.
    pub fn is_current_on(&self, existing: &BTreeMap<String, String>) -> bool {
        self.completeness == Completeness::Complete
            && existing.get(keys::FINDING_ENRICHED).map(String::as_str) == Some(ENRICHED_COMPLETE)
            && existing.get(keys::ENRICHED_FROM) == Some(&self.fingerprint)
    }

    /// The finding's existing fields to carry along, because an update may replace the whole
    /// map: everyone else's as they are, and our own tag keys whose tag is gone as `TOMBSTONE`.
    pub fn foreign_fields(&self, existing: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let ours: BTreeSet<&str> =
            existing.get(keys::ENRICHED_TAG_KEYS).map(|list| list.split(',').collect()).unwrap_or_default();
        existing
            .iter()
            .filter(|(k, _)| !self.writes_key(k))
            .map(|(k, v)| {
                let retired = ours.contains(k.as_str()) || v == TOMBSTONE;
                (k.clone(), if retired { TOMBSTONE.to_owned() } else { v.clone() })
            })
            .collect()
    }

    /// The Note to write on a finding that carries `existing`: none when the note is someone
    /// else's; else our account part, followed by the investigation part (`investigation`, or
    /// the one our note already carries), so that re-enriching never erases a verdict.
    pub fn note_for(&self, existing: Option<&Note>, investigation: Option<&str>) -> Option<String> {
        if !note_is_ours(existing) {
            return None;
        }
        let investigation = investigation.or_else(|| existing.and_then(|n| investigation_part_of(&n.text)));
        Some(match investigation {
            Some(part) => compose_note(&self.note, part),
            None => self.note.clone(),
        })
    }

    /// The update payload for findings of this account with these foreign fields and this
    /// Note (`None`: left as it is).
    pub fn payload(&self, foreign: &BTreeMap<String, String>, note: Option<String>) -> RenderedPayload {
        let mut fields = BTreeMap::new();
        let own = self.own_fields.iter().map(|(k, v)| (k, v));
        let foreign = foreign.iter().filter(|(k, v)| valid_key(k) && !v.trim().is_empty());
        // Reserved keys first (the investigator's verdict), then everyone else's.
        let (reserved, others): (Vec<_>, Vec<_>) = foreign.partition(|(k, _)| keys::is_reserved(k));
        let tags = self.tags.iter().map(|(k, v)| (k, v));
        let mut dropped = 0;
        for (key, value) in own.chain(reserved).chain(others).chain(tags) {
            if fields.len() == FIELDS_MAX_PAIRS {
                dropped += 1;
                continue;
            }
            fields.entry(key.clone()).or_insert_with(|| truncate_chars(value, FIELD_VALUE_MAX_CHARS));
        }
        RenderedPayload { payload: EnrichmentPayload { note, fields }, fields_dropped: dropped }
    }
}

/// The tag keys we write, comma-separated, as many as fit in one value (keys cannot contain a
/// comma). Keys that do not fit are not tracked, so they stay as they are if their tag is removed:
/// never someone else's key taken for ours.
fn tag_key_list(tags: &[(String, String)]) -> Option<String> {
    let mut list = String::new();
    for (key, _) in tags {
        let extra = key.chars().count() + usize::from(!list.is_empty());
        if list.chars().count() + extra > FIELD_VALUE_MAX_CHARS {
            break;
        }
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(key);
    }
    (!list.is_empty()).then_some(list)
}

/// 16 hex digits of SHA-256 (`sha2`, in the build already for the SDK's request signing) over
/// what we write for the account. Not the standard hasher: its output is not promised to stay
/// the same across Rust releases, and this value outlives the binary that wrote it.
fn fingerprint(own_fields: &[(String, String)], tags: &[(String, String)], note: &str) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for (key, value) in own_fields.iter().chain(tags) {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher.update(note.as_bytes());
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// "Root/Security/Prod": OU names from the root down to the account's parent.
fn ou_path_text(account: &AccountMetadata) -> String {
    account.ou_path.iter().map(|ou| ou.name.as_str()).collect::<Vec<_>>().join("/")
}

fn account_note(account: &AccountMetadata, path: &str, completeness: Completeness) -> String {
    let name = account.name.as_deref().unwrap_or("unknown name");
    let mut note = format!("Account {name} ({})", account.account_id);
    if !path.is_empty() {
        note.push_str(&format!(" in {path}"));
    }
    note.push('.');
    match &account.security_contact {
        ContactLookup::Found(c) => {
            note.push_str(&format!(" Security contact: {}, {}, {}, {}.", c.name, c.title, c.email, c.phone))
        }
        ContactLookup::NotSet => note.push_str(" No security contact set."),
        ContactLookup::Unknown => {}
    }
    if completeness == Completeness::Partial {
        note.push_str(" Organization details pending.");
    }
    truncate_chars(&note, NOTE_MAX_CHARS)
}

/// One BatchUpdateFindings payload. Findings with equal payloads share requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnrichmentPayload {
    /// `None` when the finding carries someone else's note, which we leave alone.
    pub note: Option<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPayload {
    pub payload: EnrichmentPayload,
    /// Pairs left out by the 50-pair cap (foreign fields before tags are kept).
    pub fields_dropped: usize,
}

impl EnrichmentPayload {
    /// True when this payload marks its findings `Partial` (organization details pending).
    pub fn is_partial(&self) -> bool {
        self.fields.get(keys::FINDING_ENRICHED).map(String::as_str) == Some(ENRICHED_PARTIAL)
    }
}

/// What the investigator adds to a finding's enrichment: the investigation part of the Note
/// and the verdict's UserDefinedFields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addendum {
    pub note: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Addendum {
    /// The payload for a finding whose account cannot be rendered (no cache entry): what it
    /// carries, with the verdict added, and our note's account part kept.
    pub fn kept_on(&self, finding: &Finding) -> EnrichmentPayload {
        let note = note_is_ours(finding.note.as_ref()).then(|| {
            let account = finding.note.as_ref().map_or("", |n| account_part_of(&n.text));
            compose_note(account, &self.note)
        });
        EnrichmentPayload { note, fields: merge_fields(&finding.user_defined_fields, &self.fields) }
    }
}

/// Between the account part and the investigation part of one Note.
pub const NOTE_SEPARATOR: &str = " | ";

/// One note from the account part and the investigation part, within 512 characters. The
/// investigation part is the newer news, so the account part gives way first.
pub fn compose_note(account_part: &str, investigation_part: &str) -> String {
    let account_part = account_part.trim();
    if account_part.is_empty() {
        return truncate_chars(investigation_part, NOTE_MAX_CHARS);
    }
    let investigation = truncate_chars(investigation_part, NOTE_MAX_CHARS / 2);
    let room = NOTE_MAX_CHARS - investigation.chars().count() - NOTE_SEPARATOR.chars().count();
    format!("{}{NOTE_SEPARATOR}{investigation}", truncate_chars(account_part, room))
}

/// The account part of a note we wrote earlier (everything before an investigation part).
pub fn account_part_of(note: &str) -> &str {
    note.split(NOTE_SEPARATOR).next().unwrap_or(note)
}

/// The investigation part of a note we wrote earlier, if it has one.
pub fn investigation_part_of(note: &str) -> Option<&str> {
    note.split_once(NOTE_SEPARATOR).map(|(_, part)| part).filter(|part| !part.trim().is_empty())
}

/// Whether the finding's note is ours to write: absent, or written by us before.
pub fn note_is_ours(note: Option<&Note>) -> bool {
    note.is_none_or(|n| n.updated_by == UPDATED_BY || n.text.is_empty())
}

#[cfg(test)]
impl AccountEnrichment {
    /// The payload for a finding without a note: ours, account part alone.
    pub(crate) fn payload_with_note(&self, foreign: &BTreeMap<String, String>) -> RenderedPayload {
        self.payload(foreign, self.note_for(None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::account::OrgUnit;
    use proptest::prelude::*;

    fn account() -> AccountMetadata {
        AccountMetadata {
            state: None,
            account_id: "111122223333".into(),
            name: Some("payments-prod".into()),
            ou_path: vec![
                OrgUnit { id: "r-ab12".into(), name: "Root".into() },
                OrgUnit { id: "ou-ab12-1".into(), name: "Workloads".into() },
                OrgUnit { id: "ou-ab12-2".into(), name: "Prod".into() },
            ],
            tags: BTreeMap::from([("CostCenter".into(), "42".into()), ("OU".into(), "forged".into())]),
            security_contact: ContactLookup::Found(Contact {
                name: "Sec Team".into(),
                title: "CISO".into(),
                email: "sec@example.com".into(),
                phone: "+1 555 0100".into(),
            }),
        }
    }

    #[test]
    fn renders_the_sample_compatible_fields() {
        let enrichment = Rendering::default().account(&account(), Completeness::Complete);
        let payload = enrichment.payload_with_note(&BTreeMap::new()).payload;
        let f = &payload.fields;
        assert_eq!(f["findingEnriched"], "True");
        assert_eq!(f["AccountName"], "payments-prod");
        assert_eq!(f["OU"], "Prod");
        assert_eq!(f["OUId"], "ou-ab12-2");
        assert_eq!(f["OUPath"], "Root/Workloads/Prod");
        assert_eq!(f["securityContact"], "Name:Sec Team | Title:CISO | Email:sec@example.com | Phone +1 555 0100");
        assert_eq!(f["CostCenter"], "42");
        assert_eq!(enrichment.tags_dropped, 1, "a tag named OU must not overwrite the OU field");
        assert_eq!(
            payload.note.as_deref(),
            Some(
                "Account payments-prod (111122223333) in Root/Workloads/Prod. Security contact: Sec Team, CISO, sec@example.com, +1 555 0100."
            )
        );
    }

    #[test]
    fn accounts_under_the_root_say_root_like_the_sample() {
        let mut a = account();
        a.ou_path.truncate(1);
        let payload = Rendering::default().account(&a, Completeness::Complete).payload_with_note(&BTreeMap::new());
        assert_eq!(payload.payload.fields["OU"], "ROOT");
        assert_eq!(payload.payload.fields["OUPath"], "Root");
    }

    #[test]
    fn foreign_fields_are_carried_and_ours_replaced() {
        let enrichment = Rendering::default().account(&account(), Completeness::Complete);
        let existing = BTreeMap::from([
            ("ticket".to_owned(), "SEC-1".to_owned()),
            ("findingEnriched".to_owned(), "Partial".to_owned()),
            ("CostCenter".to_owned(), "old".to_owned()),
            ("investigate".to_owned(), "complete".to_owned()),
        ]);
        let foreign = enrichment.foreign_fields(&existing);
        assert_eq!(foreign.keys().collect::<Vec<_>>(), ["investigate", "ticket"]);
        let fields = enrichment.payload_with_note(&foreign).payload.fields;
        assert_eq!(fields["ticket"], "SEC-1");
        assert_eq!(fields["investigate"], "complete");
        assert_eq!(fields["CostCenter"], "42");
        assert_eq!(fields["findingEnriched"], "True");
    }

    #[test]
    fn allowlist_limits_tags() {
        let filter = TagFilter::Only(BTreeSet::from(["Owner".to_owned()]));
        let fields = Rendering { tag_filter: filter, ..Default::default() }
            .account(&account(), Completeness::Complete)
            .payload_with_note(&BTreeMap::new());
        assert!(!fields.payload.fields.contains_key("CostCenter"));
    }

    #[test]
    fn partial_enrichment_is_marked_and_says_so() {
        let a = AccountMetadata::from_finding_name("111122223333", Some("from-finding"));
        let e = Rendering::default().account(&a, Completeness::Partial);
        let p = e.payload_with_note(&BTreeMap::new()).payload;
        assert_eq!(p.fields["findingEnriched"], "Partial");
        assert_eq!(p.fields["AccountName"], "from-finding");
        assert!(!p.fields.contains_key("OU"));
        assert_eq!(p.note.as_deref(), Some("Account from-finding (111122223333). Organization details pending."));
    }

    #[test]
    fn a_verdict_in_our_note_survives_re_enrichment_and_a_new_one_replaces_it() {
        let e = Rendering::default().account(&account(), Completeness::Complete);
        let ours = Note {
            text: format!("old account part{NOTE_SEPARATOR}Detective 42: severity HIGH"),
            updated_by: UPDATED_BY.into(),
        };
        let note = e.note_for(Some(&ours), None).unwrap();
        assert_eq!(account_part_of(&note), e.note);
        assert_eq!(investigation_part_of(&note), Some("Detective 42: severity HIGH"));
        let newer = e.note_for(Some(&ours), Some("Not investigated: outside the graph")).unwrap();
        assert_eq!(investigation_part_of(&newer), Some("Not investigated: outside the graph"));
        let theirs = Note { text: "analyst".into(), updated_by: "alice".into() };
        assert_eq!(e.note_for(Some(&theirs), Some("verdict")), None, "someone else's note is never written");
        assert_eq!(e.note_for(None, None).as_deref(), Some(e.note.as_str()));
    }

    #[test]
    fn someone_elses_note_is_left_alone() {
        let theirs = Note { text: "analyst".into(), updated_by: "alice".into() };
        let ours = Note { text: "x".into(), updated_by: UPDATED_BY.into() };
        assert!(!note_is_ours(Some(&theirs)));
        assert!(note_is_ours(Some(&ours)));
        assert!(note_is_ours(None));
    }

    #[test]
    fn cap_keeps_our_fields_and_foreign_before_tags() {
        let mut a = account();
        a.tags = (0..60).map(|i| (format!("tag{i:02}"), "v".to_owned())).collect();
        let e = Rendering::default().account(&a, Completeness::Complete);
        let foreign: BTreeMap<_, _> = (0..10).map(|i| (format!("ext{i}"), "x".to_owned())).collect();
        let rendered = e.payload_with_note(&foreign);
        assert_eq!(rendered.payload.fields.len(), 50);
        // Our 8 (findingEnriched, enrichedFrom, AccountName, OU, OUId, OUPath, securityContact,
        // enrichedTagKeys) first, then the 10 foreign ones, then 32 of the 60 tags.
        assert_eq!(rendered.fields_dropped, 8 + 10 + 60 - 50);
        assert!(rendered.payload.fields.contains_key("ext9"));
        assert!(rendered.payload.fields.contains_key("securityContact"));
        assert!(rendered.payload.fields.contains_key("tag31") && !rendered.payload.fields.contains_key("tag32"));
    }

    #[test]
    fn a_removed_tag_is_retired_and_someone_elses_key_is_kept() {
        let mut a = account();
        a.tags = BTreeMap::from([("team".into(), "payments".into()), ("env".into(), "prod".into())]);
        let before = Rendering::default().account(&a, Completeness::Complete);
        let mut on_finding =
            before.payload_with_note(&BTreeMap::from([("ticket".into(), "SEC-1".into())])).payload.fields;
        assert_eq!(on_finding[keys::ENRICHED_TAG_KEYS], "env,team");
        assert!(before.is_current_on(&on_finding));

        // The account loses `env` and `team` changes: ours change, the ticket stays.
        a.tags = BTreeMap::from([("team".into(), "platform".into())]);
        let after = Rendering::default().account(&a, Completeness::Complete);
        assert_ne!(after.fingerprint, before.fingerprint);
        assert!(!after.is_current_on(&on_finding), "the finding is stale");
        let foreign = after.foreign_fields(&on_finding);
        let fields = after.payload_with_note(&foreign).payload.fields;
        assert_eq!(fields["team"], "platform");
        assert_eq!(fields["env"], TOMBSTONE);
        assert_eq!(fields["ticket"], "SEC-1");
        assert_eq!(fields[keys::ENRICHED_TAG_KEYS], "team");

        // Written back, the tombstone stays ours (no longer listed) and the finding is current.
        on_finding = fields;
        assert!(after.is_current_on(&on_finding));
        assert_eq!(after.payload_with_note(&after.foreign_fields(&on_finding)).payload.fields, on_finding);
        // And if the tag comes back, its value replaces the tombstone.
        a.tags.insert("env".into(), "staging".into());
        let back = Rendering::default().account(&a, Completeness::Complete);
        assert_eq!(back.payload_with_note(&back.foreign_fields(&on_finding)).payload.fields["env"], "staging");
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "\\PC{0,2000}", Just(String::new()), Just("   ".to_owned())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn limits_hold_for_any_tags_and_names(
            name in proptest::option::of(arb_text()),
            ou_names in proptest::collection::vec(arb_text(), 0..6),
            tags in proptest::collection::btree_map(arb_text(), arb_text(), 0..80),
            foreign in proptest::collection::btree_map(arb_text(), arb_text(), 0..60),
            contact in proptest::option::of((arb_text(), arb_text(), arb_text(), arb_text())),
        ) {
            let account = AccountMetadata {
                state: None,
                account_id: "111122223333".into(),
                name,
                ou_path: ou_names.into_iter().enumerate().map(|(i, name)| OrgUnit { id: format!("ou-{i}"), name }).collect(),
                tags,
                security_contact: match contact {
                    Some((name, title, email, phone)) => ContactLookup::Found(Contact { name, title, email, phone }),
                    None => ContactLookup::NotSet,
                },
            };
            let enrichment = Rendering::default().account(&account, Completeness::Complete);
            let foreign = enrichment.foreign_fields(&foreign);
            let payload = enrichment.payload_with_note(&foreign).payload;
            let note = payload.note.unwrap();
            prop_assert!((1..=NOTE_MAX_CHARS).contains(&note.chars().count()));
            prop_assert!(payload.fields.len() <= FIELDS_MAX_PAIRS);
            prop_assert_eq!(&payload.fields[keys::FINDING_ENRICHED], ENRICHED_COMPLETE);
            for (key, value) in &payload.fields {
                prop_assert!((1..=FIELD_KEY_MAX_CHARS).contains(&key.chars().count()));
                prop_assert!((1..=FIELD_VALUE_MAX_CHARS).contains(&value.chars().count()));
                prop_assert!(!key.trim().is_empty() && !value.trim().is_empty());
            }
            // Deterministic: the same input renders the same payload.
            prop_assert_eq!(enrichment.payload_with_note(&foreign).payload.fields, payload.fields);
        }
    }
}

/// The finding's fields with `updates` applied, kept within 50 pairs: the updates and our own
/// keys first, then the rest in key order.
pub fn merge_fields(existing: &BTreeMap<String, String>, updates: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = updates.iter().map(|(k, v)| ((*k).to_owned(), field_value(v))).collect();
    let (ours, others): (Vec<_>, Vec<_>) = existing.iter().partition(|(k, _)| keys::is_reserved(k));
    for (key, value) in ours.into_iter().chain(others) {
        if fields.len() == FIELDS_MAX_PAIRS {
            break;
        }
        if valid_key(key) && !value.trim().is_empty() {
            fields.entry(key.clone()).or_insert_with(|| truncate_chars(value, FIELD_VALUE_MAX_CHARS));
        }
    }
    fields
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn merge_keeps_updates_and_reserved_keys_under_the_cap() {
        let mut existing: BTreeMap<String, String> = (0..60).map(|i| (format!("k{i:02}"), "v".to_owned())).collect();
        existing.insert("AccountName".into(), "a".into());
        let merged = merge_fields(&existing, &[("investigate", "complete".into())]);
        assert_eq!(merged.len(), FIELDS_MAX_PAIRS);
        assert_eq!(merged["investigate"], "complete");
        assert_eq!(merged["AccountName"], "a");
    }
}
