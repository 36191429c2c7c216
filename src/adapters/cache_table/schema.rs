//! The cache table's schema, in one place: its key and attributes, and the items other than
//! account entries that live in it (the quota ledger, the sweep's checkpoint and refresh queue). Everything that reads or writes the table
//! asks here; the template tests read `LEDGER_KEY` from this file.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::core::finding::is_account_id;

/// Partition key (S): a 12-digit account id, or the key of one of the special items below.
pub const KEY_ATTRIBUTE: &str = "AccountId";
/// An account entry: the `CacheEntry` as JSON (S).
pub const ENTRY_ATTRIBUTE: &str = "Entry";
/// DynamoDB's TTL attribute (N, epoch seconds). TTL deletes up to ~48 h late: readers check it.
pub const TTL_ATTRIBUTE: &str = "ExpiresAt";

/// The quota ledger's item. Account ids are twelve digits, so it never collides with an entry.
pub const LEDGER_KEY: &str = "quota#securityhub:BatchUpdateFindings";
/// In the ledger item, claims are attributes `h_<holder>` holding their expiry (epoch
/// milliseconds). Attributes rather than one map: SET on a map entry fails until the map
/// exists, and would need a second call to create it.
pub const HOLDER_PREFIX: &str = "h_";

/// Where the sweep of every active finding stopped (attributes below), for the refresher.
pub const CHECKPOINT_KEY: &str = "sweep#checkpoint";
/// The checkpoint's GetFindings NextToken (S) and the pass's start (N, epoch seconds).
pub const TOKEN_ATTRIBUTE: &str = "Token";
pub const PASS_STARTED_ATTRIBUTE: &str = "PassStartedAt";
/// The accounts whose findings wait to be refreshed (`ACCOUNTS_ATTRIBUTE`, a string set that
/// account-events and `enricher-admin invalidate` add to and the sweep takes from).
pub const REFRESH_QUEUE_KEY: &str = "refresh#queue";
/// The item that says when the last pass over every finding reached its end.
pub const LAST_PASS_KEY: &str = "sweep#last-pass";
pub const COMPLETED_AT_ATTRIBUTE: &str = "CompletedAt";
/// The refresher's run lease: one run at a time, whatever the schedule fires.
pub const LEASE_KEY: &str = "refresh#lease";
pub const HOLDER_ATTRIBUTE: &str = "Holder";
pub const LEASED_UNTIL_ATTRIBUTE: &str = "LeasedUntil";
pub const ACCOUNTS_ATTRIBUTE: &str = "Accounts";
/// The last completed pass's posture counts (`core::posture::CompletedPass` as JSON in
/// `COUNTS_ATTRIBUTE`, with `COMPLETED_AT_ATTRIBUTE` and `PASS_STARTED_ATTRIBUTE`), which
/// `enricher-admin report` reads.
pub const POSTURE_KEY: &str = "posture#last-pass";
/// The refresher's running pass: its counts so far (`core::posture::PassProgress` as JSON).
pub const POSTURE_PROGRESS_KEY: &str = "posture#progress";
pub const COUNTS_ATTRIBUTE: &str = "Counts";

/// The key attribute value of an item.
pub fn key(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// True when the item with this key is an account entry, not a special item: only these are
/// read as cache entries and only these does `invalidate_all` delete.
pub fn is_account_entry(key: &str) -> bool {
    is_account_id(key)
}

/// The pending-writes store (`service::pending`): one item per account, `pending#<account>`,
/// whose attributes `f_<finding key>` hold the waiting findings (JSON, S), with the TTL above
/// and the drainer's claim (`DrainUntil`, N, epoch milliseconds).
pub const PENDING_PREFIX: &str = "pending#";
pub const PENDING_FINDING_PREFIX: &str = "f_";
pub const DRAIN_UNTIL_ATTRIBUTE: &str = "DrainUntil";
/// Its index: `PENDING_INDEX_SHARDS` items `pending-index#<n>`, an account in the one its id
/// hashes to, as attributes `n_<account>` (findings waiting, N) and `o_<account>` (since when the
/// oldest waits, N, epoch milliseconds). Sharded: every hold updates its accounts' shards, and
/// one item holding 5,000 accounts would cost 150 write units per update.
pub const PENDING_INDEX_PREFIX: &str = "pending-index#";
pub const PENDING_INDEX_SHARDS: u32 = 16;
pub const PENDING_COUNT_PREFIX: &str = "n_";
pub const PENDING_OLDEST_PREFIX: &str = "o_";

/// The index shard of an account: its id's number modulo the shards (ids are 12 digits; any
/// other key hashes by its bytes).
pub fn pending_index_key(account: &str) -> String {
    let n = account.parse::<u64>().unwrap_or_else(|_| account.bytes().map(u64::from).sum());
    format!("{PENDING_INDEX_PREFIX}{}", n % u64::from(PENDING_INDEX_SHARDS))
}
