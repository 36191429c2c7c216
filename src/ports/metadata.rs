//! Ports: where account metadata is cached (`MetadataStore`) and where it comes from when no
//! cache has it (`AccountSource`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::core::account::AccountRecord;
use crate::core::cache_entry::CacheEntry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on table {table} failed")]
    Request {
        operation: &'static str,
        table: String,
        #[source]
        source: BoxError,
    },
    #[error("DynamoDB {operation} left {count} items unprocessed after retries")]
    Unprocessed { operation: &'static str, count: usize },
    #[error("cache entry could not be encoded")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("cache store unavailable: {reason}")]
    Unavailable { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{service} {operation} failed")]
    Request {
        service: &'static str,
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("lookup budget spent before {operation} could run")]
    Budget { operation: &'static str },
    #[error("organization data is inconsistent: {what}")]
    Inconsistent { what: String },
    /// The error of a fetch that several callers waited on together.
    #[error(transparent)]
    Shared(Arc<LookupError>),
}

impl LookupError {
    /// True when the lookup ran out of time or quota rather than failing.
    pub fn is_budget(&self) -> bool {
        match self {
            LookupError::Budget { .. } => true,
            LookupError::Shared(inner) => inner.is_budget(),
            _ => false,
        }
    }
}

/// The persistent cache tier.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Unexpired entries for these accounts; accounts without one are absent from the map.
    async fn get_many(&self, account_ids: &[String]) -> Result<HashMap<String, CacheEntry>, StoreError>;
    async fn put_many(&self, entries: &[(String, CacheEntry)]) -> Result<(), StoreError>;
    /// Deletes these accounts' entries; returns how many were asked for.
    async fn invalidate(&self, account_ids: &[String]) -> Result<usize, StoreError>;
    /// Deletes every entry; returns how many.
    async fn invalidate_all(&self) -> Result<usize, StoreError>;
}

/// Where account metadata comes from when no cache has it.
#[async_trait]
pub trait AccountSource: Send + Sync {
    async fn lookup(&self, account_id: &str, deadline: Instant) -> Result<AccountRecord, LookupError>;
}

/// An account as the walk of the OU tree found it: its name and OU path, before its tags and
/// security contact (which only per-account calls can read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedAccount {
    pub account_id: String,
    pub name: Option<String>,
    /// From the root (first) to the account's parent (last).
    pub ou_path: Vec<crate::core::account::OrgUnit>,
    pub state: Option<crate::core::account::AccountState>,
}

/// The whole organization at once, in the fewest calls: names, states and OU paths from
/// ListAccounts' `Paths` (accounts ÷ 20 pages + one name per OU) or, without them, from walking
/// the OU tree (about OUs + accounts ÷ 20 pages), then tags and contact per account.
#[async_trait]
pub trait OrganizationWalk: Send + Sync {
    async fn walk(&self, deadline: Instant) -> Result<Vec<WalkedAccount>, LookupError>;
    async fn complete(&self, account: WalkedAccount, deadline: Instant) -> Result<AccountRecord, LookupError>;
}
