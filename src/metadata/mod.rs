//! Account metadata: the model, and the tiers that answer for it once per batch
//! (in-process cache, DynamoDB table, Organizations and Account Management).

mod model;

pub use model::{AccountMetadata, AccountRecord, Contact, ContactLookup, OrgUnit};
