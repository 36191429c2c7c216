//! The sweep's state in memory (the `SweepState` port): checkpoint and refresh queue.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use securityhub_enricher::ports::metadata::StoreError;
use securityhub_enricher::ports::sweep_state::{Checkpoint, SweepState};

#[derive(Default)]
pub struct InMemorySweepState {
    checkpoint: Mutex<Option<Checkpoint>>,
    queue: Mutex<BTreeSet<String>>,
    last_pass: Mutex<Option<i64>>,
    /// The lease's holder and expiry.
    pub lease: Mutex<Option<(String, i64)>>,
    /// Enqueueing fails (the cache table unreachable) while this is set.
    pub refuse_enqueue: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SweepState for InMemorySweepState {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoint.lock().unwrap().clone())
    }

    async fn save_checkpoint(&self, checkpoint: Option<&Checkpoint>) -> Result<(), StoreError> {
        *self.checkpoint.lock().unwrap() = checkpoint.cloned();
        Ok(())
    }

    async fn queued(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.queue.lock().unwrap().iter().cloned().collect())
    }

    async fn enqueue(&self, accounts: &[String]) -> Result<(), StoreError> {
        if self.refuse_enqueue.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unprocessed { operation: "UpdateItem", count: accounts.len() });
        }
        self.queue.lock().unwrap().extend(accounts.iter().cloned());
        Ok(())
    }

    async fn dequeue(&self, accounts: &[String]) -> Result<(), StoreError> {
        let mut queue = self.queue.lock().unwrap();
        for account in accounts {
            queue.remove(account);
        }
        Ok(())
    }

    async fn last_pass_completed(&self) -> Result<Option<i64>, StoreError> {
        Ok(*self.last_pass.lock().unwrap())
    }

    async fn record_pass_completed(&self, at: i64) -> Result<(), StoreError> {
        *self.last_pass.lock().unwrap() = Some(at);
        Ok(())
    }

    async fn take_lease(&self, holder: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let mut lease = self.lease.lock().unwrap();
        match lease.as_ref() {
            Some((other, expires)) if other != holder && *expires >= now => Ok(false),
            _ => {
                *lease = Some((holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let mut lease = self.lease.lock().unwrap();
        if lease.as_ref().is_some_and(|(h, _)| h == holder) {
            *lease = None;
        }
        Ok(())
    }
}
