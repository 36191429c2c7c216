//! The posture counts' store in memory (the `PostureStore` port).

use std::sync::Mutex;

use async_trait::async_trait;
use securityhub_enricher::core::posture::{CompletedPass, PassProgress};
use securityhub_enricher::ports::metadata::StoreError;
use securityhub_enricher::ports::posture::PostureStore;

#[derive(Default)]
pub struct InMemoryPostureStore {
    pub last: Mutex<Option<CompletedPass>>,
    pub running: Mutex<Option<PassProgress>>,
}

#[async_trait]
impl PostureStore for InMemoryPostureStore {
    async fn last_pass(&self) -> Result<Option<CompletedPass>, StoreError> {
        Ok(self.last.lock().unwrap().clone())
    }

    async fn progress(&self) -> Result<Option<PassProgress>, StoreError> {
        Ok(self.running.lock().unwrap().clone())
    }

    async fn save_pass(&self, pass: &CompletedPass) -> Result<(), StoreError> {
        *self.last.lock().unwrap() = Some(pass.clone());
        Ok(())
    }

    async fn save_progress(&self, progress: Option<&PassProgress>) -> Result<(), StoreError> {
        *self.running.lock().unwrap() = progress.cloned();
        Ok(())
    }
}
