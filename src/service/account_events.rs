//! The `account-events` function's work: forget the cached metadata of the accounts a
//! forwarded CloudTrail event says changed (see `core::account_change`), and queue them for
//! refresh so the refresher rewrites their findings, and only theirs.

use serde_json::Value;

use crate::core::account_change::{Change, changed_accounts};
use crate::ports::metadata::{MetadataStore, StoreError};
use crate::ports::sweep_state::SweepState;

/// Forgets the cached entries an event makes stale and queues their accounts for refresh.
pub async fn forget_changed(
    store: &dyn MetadataStore,
    queue: &dyn SweepState,
    event: &Value,
) -> Result<Change, StoreError> {
    let change = changed_accounts(event);
    if let Change::Accounts(accounts) = &change {
        store.invalidate(accounts).await?;
        queue.enqueue(accounts).await?;
    }
    Ok(change)
}
