//! The cache table (`CACHE_TABLE`): its schema (`schema`, the one owner of keys and
//! attributes), the account metadata tier (`store`), the quota ledger item (`ledger`), the posture
//! counts of the sweep's passes (`posture`), the sweep's checkpoint and refresh queue
//! (`sweep_state`), the pending-writes store (`pending`), and the capacity units the store's
//! requests consume (`capacity`).

pub mod capacity;
pub mod ledger;
pub mod pending;
pub mod posture;
pub mod schema;
pub mod store;
pub mod sweep_state;
