//! Port: publishing enriched-finding events (EventBridge PutEvents).

use async_trait::async_trait;

use crate::core::enriched_event::EventEntry;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An entry the bus did not accept, by its position in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub index: usize,
    pub code: String,
    pub message: String,
}

impl FailedEntry {
    /// PutEvents entry codes worth another try (throttling, internal failure); the others (a
    /// malformed detail, a missing bus) fail the same way on every retry.
    pub fn is_transient(&self) -> bool {
        matches!(self.code.as_str(), "ThrottlingException" | "InternalFailure" | "InternalException" | "")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("PutEvents was throttled")]
    Throttled {
        #[source]
        source: BoxError,
    },
    #[error("PutEvents failed; worth retrying")]
    Transient {
        #[source]
        source: BoxError,
    },
    #[error("PutEvents rejected the request ({code})")]
    Rejected {
        code: String,
        #[source]
        source: BoxError,
    },
}

/// One PutEvents call of at most 10 entries; answers with the entries that failed.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn put_events(&self, entries: &[EventEntry]) -> Result<Vec<FailedEntry>, PublishError>;
}
