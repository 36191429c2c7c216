//! The dead-letter queue (SQS) and the findings stream (Kinesis) for `enricher-admin redrive`:
//! ReceiveMessage/DeleteMessage; GetShardIterator (AT_SEQUENCE_NUMBER), GetRecords, PutRecords.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_smithy_types::Blob;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::core::redrive::KinesisBatchInfo;
use crate::ports::redrive::{BatchRead, DeadLetter, DeadLetterQueue, RedriveError, StreamRecord, StreamReplay};

/// GetRecords: at most 5 calls per second per shard, shared with the pipe that reads the same
/// shard; the redrive takes one call every this long.
const GET_RECORDS_PAUSE: Duration = Duration::from_millis(250);
/// GetRecords returns at most 10,000 records per call.
const GET_RECORDS_LIMIT: i32 = 10_000;
/// A batch holds at most 10,000 records (the pipe's BatchSize limit): this many calls cover it
/// with room for empty pages.
const MAX_GET_RECORDS_CALLS: usize = 50;

fn failed(operation: &'static str, error: impl ProvideErrorMetadata + std::fmt::Display) -> RedriveError {
    let message = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => error.to_string(),
    };
    RedriveError { operation, message }
}

pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsDeadLetters { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl DeadLetterQueue for SqsDeadLetters {
    async fn receive(&self, max: i32, visibility_seconds: i32) -> Result<Vec<DeadLetter>, RedriveError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .visibility_timeout(visibility_seconds)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| failed("SQS ReceiveMessage", e.into_service_error()))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| DeadLetter {
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, letter: &DeadLetter) -> Result<(), RedriveError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&letter.receipt_handle)
            .send()
            .await
            .map_err(|e| failed("SQS DeleteMessage", e.into_service_error()))?;
        Ok(())
    }
}

pub struct KinesisReplay {
    client: aws_sdk_kinesis::Client,
}

impl KinesisReplay {
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        KinesisReplay { client }
    }

    async fn iterator(&self, stream: &str, batch: &KinesisBatchInfo) -> Result<Option<String>, RedriveError> {
        let at_start = self
            .client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&batch.start_sequence_number)
            .send()
            .await;
        match at_start {
            Ok(out) => Ok(out.shard_iterator),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_resource_not_found_exception() {
                    return Ok(None);
                }
                if !e.is_invalid_argument_exception() {
                    return Err(failed("Kinesis GetShardIterator", e));
                }
                // The start is no longer a valid position (trimmed): read what is left of the
                // shard, from its oldest record; the batch's records before it are lost.
                let out = self
                    .client
                    .get_shard_iterator()
                    .stream_name(stream)
                    .shard_id(&batch.shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .map_err(|e| failed("Kinesis GetShardIterator", e.into_service_error()))?;
                Ok(out.shard_iterator)
            }
        }
    }
}

#[async_trait]
impl StreamReplay for KinesisReplay {
    async fn read(&self, stream: &str, batch: &KinesisBatchInfo) -> Result<BatchRead, RedriveError> {
        let Some(mut iterator) = self.iterator(stream, batch).await? else {
            return Ok(BatchRead { shard_gone: true, ..BatchRead::default() });
        };
        let mut read = BatchRead::default();
        for call in 0..MAX_GET_RECORDS_CALLS {
            if call > 0 {
                tokio::time::sleep(GET_RECORDS_PAUSE).await;
            }
            let out = self
                .client
                .get_records()
                // The stream, for IAM (a shard iterator does not name it to the policy).
                .set_stream_arn(batch.stream_arn.clone())
                .shard_iterator(&iterator)
                .limit(GET_RECORDS_LIMIT)
                .send()
                .await
                .map_err(|e| failed("Kinesis GetRecords", e.into_service_error()))?;
            let at_tip = out.records.is_empty() && out.millis_behind_latest == Some(0);
            for record in out.records {
                if batch.is_past_end(&record.sequence_number) {
                    read.end_reached = true;
                    break;
                }
                if batch.contains(&record.sequence_number) {
                    read.end_reached = record.sequence_number == batch.end_sequence_number;
                    read.records.push(StreamRecord {
                        sequence_number: record.sequence_number,
                        partition_key: record.partition_key,
                        data: record.data.into_inner(),
                    });
                }
            }
            match out.next_shard_iterator {
                Some(next) if !read.end_reached && !at_tip => iterator = next,
                // The end, a closed shard, or the stream's tip.
                _ => break,
            }
        }
        Ok(read)
    }

    async fn put(&self, stream: &str, records: &[StreamRecord]) -> Result<Vec<(usize, String)>, RedriveError> {
        let entries = records
            .iter()
            .map(|r| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&r.partition_key)
                    .data(Blob::new(r.data.clone()))
                    .build()
                    .map_err(|e| RedriveError { operation: "Kinesis PutRecords", message: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| failed("Kinesis PutRecords", e.into_service_error()))?;
        Ok(out.records.iter().enumerate().filter_map(|(i, r)| r.error_code.clone().map(|code| (i, code))).collect())
    }
}
