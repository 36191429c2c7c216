//! The cache table (`CACHE_TABLE`): its schema (`schema`, the one owner of keys and
//! attributes), the account metadata tier (`store`) and the quota ledger item (`ledger`).

pub mod ledger;
pub mod schema;
pub mod store;
