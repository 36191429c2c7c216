//! What we know about an account: the data enrichment renders, as cached and as looked up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An organizational unit, or the root, on an account's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUnit {
    pub id: String,
    pub name: String,
}

/// The SECURITY alternate contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub title: String,
    pub email: String,
    pub phone: String,
}

/// The outcome of GetAlternateContact, each kept because each is cached differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "contact")]
pub enum ContactLookup {
    Found(Contact),
    /// ResourceNotFound: the account has no security contact. A fact, cached like data.
    NotSet,
    /// AccessDenied or not configured: we cannot tell. Cached briefly.
    Unknown,
}

/// An account's lifecycle state as Organizations reports it (`Account.State`, which replaces
/// `Account.Status`, retired on 9 September 2026). Findings of suspended or closed accounts are
/// routed apart on it (`accountState`, and the event's `account.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountState {
    PendingActivation,
    Active,
    Suspended,
    PendingClosure,
    Closed,
}

impl AccountState {
    /// Organizations' spelling, which we write and publish unchanged.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::PendingActivation => "PENDING_ACTIVATION",
            AccountState::Active => "ACTIVE",
            AccountState::Suspended => "SUSPENDED",
            AccountState::PendingClosure => "PENDING_CLOSURE",
            AccountState::Closed => "CLOSED",
        }
    }

    /// None for a value this version does not know (Organizations may add states).
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "PENDING_ACTIVATION" => AccountState::PendingActivation,
            "ACTIVE" => AccountState::Active,
            "SUSPENDED" => AccountState::Suspended,
            "PENDING_CLOSURE" => AccountState::PendingClosure,
            "CLOSED" => AccountState::Closed,
            _ => return None,
        })
    }
}

/// Everything enrichment needs about one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMetadata {
    pub account_id: String,
    pub name: Option<String>,
    /// From the root (first) to the account's parent (last). Empty when unknown.
    pub ou_path: Vec<OrgUnit>,
    pub tags: BTreeMap<String, String>,
    pub security_contact: ContactLookup,
    /// None when unknown: not looked up yet (a finding's name only), or cached before the
    /// state was read (such entries are read back without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AccountState>,
}

impl AccountMetadata {
    /// What we can say about an account without asking Organizations: the name Security Hub put
    /// in the finding itself.
    pub fn from_finding_name(account_id: &str, name: Option<&str>) -> Self {
        AccountMetadata {
            account_id: account_id.to_owned(),
            name: name.map(str::to_owned),
            ou_path: Vec::new(),
            tags: BTreeMap::new(),
            security_contact: ContactLookup::Unknown,
            state: None,
        }
    }

    pub fn parent(&self) -> Option<&OrgUnit> {
        self.ou_path.last()
    }
}

/// A lookup's answer: the account, or a confirmed absence (cached as a negative entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum AccountRecord {
    Found(AccountMetadata),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_cached_before_the_state_was_read_still_decodes() {
        let old = r#"{"kind":"Found","account_id":"111122223333","name":"a","ou_path":[],"tags":{},"security_contact":{"state":"NotSet"}}"#;
        let AccountRecord::Found(meta) = serde_json::from_str::<AccountRecord>(old).unwrap() else { panic!() };
        assert_eq!(meta.state, None);
        let mut closed = meta.clone();
        closed.state = Some(AccountState::PendingClosure);
        let text = serde_json::to_string(&AccountRecord::Found(closed.clone())).unwrap();
        assert!(text.contains(r#""state":"PENDING_CLOSURE""#), "{text}");
        assert_eq!(serde_json::from_str::<AccountRecord>(&text).unwrap(), AccountRecord::Found(closed));
        for state in ["PENDING_ACTIVATION", "ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"] {
            assert_eq!(AccountState::parse(state).map(AccountState::as_str), Some(state));
        }
        assert_eq!(AccountState::parse("RETIRED"), None);
    }
}
