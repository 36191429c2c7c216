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
}
