//! What Security Hub allows in the fields we write and which UserDefinedFields keys are ours:
//! the leaf that rendering (`enrich`), the new hub's comment (`comment`) and routing share.

pub const NOTE_MAX_CHARS: usize = 512;
pub const FIELDS_MAX_PAIRS: usize = 50;
pub const FIELD_KEY_MAX_CHARS: usize = 128;
pub const FIELD_VALUE_MAX_CHARS: usize = 1024;

/// The UserDefinedFields keys we own. Users' insights and automation rules depend on the
/// first five, which the account-metadata sample introduced: keep their spelling.
pub mod keys {
    pub const ACCOUNT_NAME: &str = "AccountName";
    pub const OU: &str = "OU";
    pub const SECURITY_CONTACT: &str = "securityContact";
    pub const FINDING_ENRICHED: &str = "findingEnriched";
    pub const OU_PATH: &str = "OUPath";
    pub const OU_ID: &str = "OUId";
    /// Routing (`ROUTING_POLICY`): ours only when the policy or the owner tag sets them.
    pub const OWNER: &str = "owner";
    pub const ENVIRONMENT: &str = "environment";
    pub const CRITICALITY: &str = "criticality";
    /// Written by the investigator; reserved so that an account tag can never forge them.
    pub const INVESTIGATE: &str = "investigate";
    pub const INVESTIGATION_SEVERITY: &str = "investigationSeverity";
    pub const INVESTIGATION_ID: &str = "investigationId";
    pub const INVESTIGATION_INDICATORS: &str = "investigationIndicators";
    /// A short fingerprint of the metadata the finding was enriched from: the sweep tells
    /// current findings from stale ones by it, without rewriting the current ones.
    pub const ENRICHED_FROM: &str = "enrichedFrom";
    /// The account tag keys we wrote, comma-separated: they are ours, so when a tag is removed
    /// from the account its key on the finding is ours to retire (see `TOMBSTONE`).
    pub const ENRICHED_TAG_KEYS: &str = "enrichedTagKeys";
    /// The account's state in Organizations (`ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`,
    /// `CLOSED`, `PENDING_ACTIVATION`), so findings of closing accounts can be routed apart.
    pub const ACCOUNT_STATE: &str = "accountState";

    pub const RESERVED: [&str; 13] = [
        ACCOUNT_NAME,
        OU,
        SECURITY_CONTACT,
        FINDING_ENRICHED,
        OU_PATH,
        OU_ID,
        INVESTIGATE,
        INVESTIGATION_SEVERITY,
        INVESTIGATION_ID,
        INVESTIGATION_INDICATORS,
        ENRICHED_FROM,
        ENRICHED_TAG_KEYS,
        ACCOUNT_STATE,
    ];

    /// Keys the enricher itself writes: an existing value under one of these is replaced.
    pub const ENRICHER_OWNED: [&str; 9] = [
        FINDING_ENRICHED,
        ENRICHED_FROM,
        ACCOUNT_NAME,
        OU,
        OU_ID,
        OU_PATH,
        SECURITY_CONTACT,
        ENRICHED_TAG_KEYS,
        ACCOUNT_STATE,
    ];

    pub fn is_reserved(key: &str) -> bool {
        RESERVED.contains(&key)
    }
}

const ELLIPSIS: char = '…';

/// How complete our knowledge of the account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Completeness {
    Complete,
    Partial,
}

/// Truncates to `max` characters, marking the cut with an ellipsis. Counts Unicode scalar
/// values, as Security Hub's length constraints do.
pub fn truncate_chars(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_owned();
    }
    let mut out: String = value.chars().take(max.saturating_sub(1)).collect();
    out.push(ELLIPSIS);
    out
}
