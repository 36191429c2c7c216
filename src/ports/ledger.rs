//! Port: the shared ledger in which enricher environments claim shares of BatchUpdateFindings'
//! quota (see `service::quota_share`).

use std::time::Duration;

use async_trait::async_trait;

use crate::core::rate::Holders;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("DynamoDB {operation} on the quota ledger in table {table} failed")]
    Request {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the quota ledger did not answer within {0:?}")]
    Timeout(Duration),
}

/// Where environments record that they are sending updates.
#[async_trait]
pub trait QuotaLedger: Send + Sync {
    /// Claims a share for `holder` for `ttl` (renewing any earlier claim) and returns the
    /// unexpired claims the ledger holds, this one included.
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<Holders, LedgerError>;
    /// Gives the share back before the claim would lapse.
    async fn release(&self, holder: &str) -> Result<(), LedgerError>;
}
