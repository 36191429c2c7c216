//! An in-memory quota ledger (the `QuotaLedger` port) for handler tests and the simulator.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use securityhub_enricher::core::rate::Holders;
use securityhub_enricher::ports::ledger::{LedgerError, QuotaLedger};
use tokio::time::Instant;

/// The ledger in memory, for the simulator and handler tests; `latency` per call.
#[derive(Default)]
pub struct InMemoryLedger {
    claims: Mutex<HashMap<String, Instant>>,
    latency: Duration,
    /// Claims, renewals and releases: the UpdateItem calls the DynamoDB ledger would make.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl InMemoryLedger {
    pub fn with_latency(latency: Duration) -> Self {
        InMemoryLedger { latency, ..Default::default() }
    }

    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.claims.lock().expect("ledger lock").values().filter(|until| **until > now).count()
    }
}

#[async_trait]
impl QuotaLedger for InMemoryLedger {
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<Holders, LedgerError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        let now = Instant::now();
        let mut claims = self.claims.lock().expect("ledger lock");
        claims.insert(holder.to_owned(), now + ttl);
        claims.retain(|_, until| *until > now);
        Ok(claims.keys().fold(Holders::default(), |sum, holder| {
            let one = Holders::of(holder);
            Holders { foreground: sum.foreground + one.foreground, background: sum.background + one.background }
        }))
    }

    async fn release(&self, holder: &str) -> Result<(), LedgerError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
        self.claims.lock().expect("ledger lock").remove(holder);
        Ok(())
    }
}
