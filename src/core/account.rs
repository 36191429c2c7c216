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

/// Everything enrichment needs about one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMetadata {
    pub account_id: String,
    pub name: Option<String>,
    /// From the root (first) to the account's parent (last). Empty when unknown.
    pub ou_path: Vec<OrgUnit>,
    pub tags: BTreeMap<String, String>,
    pub security_contact: ContactLookup,
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
