//! An in-memory EventBridge bus (the `EventPublisher` port): keeps what it accepted, follows a
//! script of failures, and refuses what PutEvents would (more than 10 entries, over 256 KB).

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use securityhub_enricher::core::enriched_event::{EventEntry, MAX_ENTRIES_PER_CALL, MAX_ENTRY_BYTES, entry_size};
use securityhub_enricher::ports::events::{EventPublisher, FailedEntry, PublishError};

/// A scripted answer for the bus's next call.
#[derive(Debug, Clone)]
pub enum BusReply {
    /// The whole call is throttled.
    Throttle,
    /// These entry positions fail with this code; the others are accepted.
    FailEntries { indices: Vec<usize>, code: String },
    /// The whole call fails for good (ResourceNotFoundException: no such bus).
    Reject,
}

#[derive(Default)]
pub struct InMemoryBus {
    pub accepted: Mutex<Vec<EventEntry>>,
    /// Entries per call, failed calls included.
    pub calls: Mutex<Vec<usize>>,
    script: Mutex<VecDeque<BusReply>>,
}

impl InMemoryBus {
    pub fn script(&self, replies: impl IntoIterator<Item = BusReply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// The accepted events' details, parsed.
    pub fn details(&self) -> Vec<serde_json::Value> {
        self.accepted.lock().unwrap().iter().map(|e| serde_json::from_str(&e.detail).expect("JSON detail")).collect()
    }
}

#[async_trait]
impl EventPublisher for InMemoryBus {
    async fn put_events(&self, entries: &[EventEntry]) -> Result<Vec<FailedEntry>, PublishError> {
        self.calls.lock().unwrap().push(entries.len());
        if entries.is_empty() || entries.len() > MAX_ENTRIES_PER_CALL {
            return Err(PublishError::Rejected {
                code: "ValidationException".into(),
                source: "1 to 10 entries".into(),
            });
        }
        let mut failed: Vec<FailedEntry> = Vec::new();
        match self.script.lock().unwrap().pop_front() {
            Some(BusReply::Throttle) => {
                return Err(PublishError::Throttled { source: "ThrottlingException (scripted)".into() });
            }
            Some(BusReply::Reject) => {
                return Err(PublishError::Rejected {
                    code: "ResourceNotFoundException".into(),
                    source: "scripted".into(),
                });
            }
            Some(BusReply::FailEntries { indices, code }) => {
                failed.extend(indices.into_iter().filter(|&i| i < entries.len()).map(|index| FailedEntry {
                    index,
                    code: code.clone(),
                    message: "scripted".into(),
                }));
            }
            None => {}
        }
        let mut accepted = self.accepted.lock().unwrap();
        for (index, entry) in entries.iter().enumerate() {
            if failed.iter().any(|f| f.index == index) {
                continue;
            }
            if entry_size(entry) > MAX_ENTRY_BYTES {
                failed.push(FailedEntry { index, code: "ValidationException".into(), message: "too large".into() });
                continue;
            }
            accepted.push(entry.clone());
        }
        Ok(failed)
    }
}
