//! The `account-events` function's work: forget the cached metadata of the accounts a
//! forwarded CloudTrail event says changed (see `core::account_change`).

use serde_json::Value;

use crate::core::account_change::{Change, changed_accounts};
use crate::ports::metadata::{MetadataStore, StoreError};

/// Forgets the cached entries an event makes stale.
pub async fn forget_changed(store: &dyn MetadataStore, event: &Value) -> Result<Change, StoreError> {
    let change = changed_accounts(event);
    if let Change::Accounts(accounts) = &change {
        store.invalidate(accounts).await?;
    }
    Ok(change)
}
