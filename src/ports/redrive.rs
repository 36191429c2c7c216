//! What `enricher-admin redrive` needs of the dead-letter queue and of the stream.

use async_trait::async_trait;

use crate::core::redrive::KinesisBatchInfo;

/// One message of the dead-letter queue, received (invisible to others until its visibility
/// timeout ends, or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

/// One record read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The records of a batch the stream still holds, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchRead {
    pub records: Vec<StreamRecord>,
    /// The shard no longer exists (it was closed and has aged out of the retention period).
    pub shard_gone: bool,
    /// A record past the batch's end was seen, or the batch's end record itself: the read is
    /// complete up to the end.
    pub end_reached: bool,
}

/// A failed call, with the operation and the service's message.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct RedriveError {
    pub operation: &'static str,
    pub message: String,
}

#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to `max` (≤ 10) messages, hidden from other readers for `visibility_seconds`.
    async fn receive(&self, max: i32, visibility_seconds: i32) -> Result<Vec<DeadLetter>, RedriveError>;
    async fn delete(&self, letter: &DeadLetter) -> Result<(), RedriveError>;
}

#[async_trait]
pub trait StreamReplay: Send + Sync {
    /// The retained records of `batch` on `stream`, from its start to its end.
    async fn read(&self, stream: &str, batch: &KinesisBatchInfo) -> Result<BatchRead, RedriveError>;
    /// Puts records (one PutRecords call: ≤ 500 records, ≤ 5 MiB) with their partition keys;
    /// returns the positions that failed with their error codes.
    async fn put(&self, stream: &str, records: &[StreamRecord]) -> Result<Vec<(usize, String)>, RedriveError>;
}
