//! A local stand-in for the EventBridge Pipe: puts events on a Kinesis stream (partition key =
//! account id, as the EventBridge rule does) and reads each shard back in batches shaped as the
//! Pipe delivers them.

use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use serde_json::{Value, json};

use super::LocalError;
use crate::batches::{INVOCATION_PAYLOAD_LIMIT, PipeSource, StreamRecord, cut_batches};
use crate::replay::{Replayer, StreamEntry};

pub struct LocalPipe {
    client: aws_sdk_kinesis::Client,
    stream: String,
    stream_arn: String,
    /// The last sequence number read per shard: the pipe's checkpoint.
    checkpoints: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

fn kinesis_error(step: &str) -> impl FnOnce(aws_sdk_kinesis::Error) -> LocalError + '_ {
    move |e| LocalError::new(step, e)
}

impl LocalPipe {
    pub async fn create(client: aws_sdk_kinesis::Client, stream: &str, shards: i32) -> Result<Self, LocalError> {
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .map_err(|e| kinesis_error("CreateStream")(e.into()))?;
        for _ in 0..50 {
            let summary = client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await
                .map_err(|e| kinesis_error("DescribeStreamSummary")(e.into()))?;
            if let Some(s) = summary.stream_description_summary
                && s.stream_status == StreamStatus::Active
            {
                return Ok(LocalPipe {
                    client,
                    stream: stream.to_owned(),
                    stream_arn: s.stream_arn,
                    checkpoints: Default::default(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(LocalError::new("CreateStream", "stream did not become ACTIVE"))
    }

    /// An existing stream, for replaying into it.
    pub async fn open(client: aws_sdk_kinesis::Client, stream: &str) -> Result<Self, LocalError> {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| kinesis_error("DescribeStreamSummary")(e.into()))?;
        let arn = summary.stream_description_summary.map(|s| s.stream_arn).unwrap_or_default();
        Ok(LocalPipe { client, stream: stream.to_owned(), stream_arn: arn, checkpoints: Default::default() })
    }

    /// Puts events as the EventBridge rule would (keyed by account), retrying failed entries.
    pub async fn put_events(&self, events: &[Value]) -> Result<crate::replay::ReplayStats, LocalError> {
        let entries: Vec<StreamEntry> = events.iter().map(StreamEntry::for_event).collect();
        Replayer::new(self.client.clone(), &self.stream)
            .put(&entries, |_| {})
            .await
            .map_err(|e| LocalError::new("PutRecords", e))
    }

    /// Reads every shard from its checkpoint (the start, the first time) and cuts each shard's
    /// records into batches as the Pipe does (up to `batch_size` records and 6 MB of payload),
    /// each a Pipe-shaped JSON array (records of one batch share one shard).
    pub async fn read_batches(&self, batch_size: usize) -> Result<Vec<Vec<Value>>, LocalError> {
        let shards = self
            .client
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(|e| kinesis_error("ListShards")(e.into()))?
            .shards
            .unwrap_or_default();
        let source = PipeSource {
            stream_arn: self.stream_arn.clone(),
            region: super::findings::REGION.to_owned(),
            invoke_identity_arn: "arn:aws:iam::111111111111:role/local-pipe".to_owned(),
        };
        let mut batches = Vec::new();
        for shard in shards {
            let checkpoint = self.checkpoints.lock().expect("checkpoint lock").get(&shard.shard_id).cloned();
            let request = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(&shard.shard_id);
            let request = match checkpoint {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(sequence),
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let mut iterator =
                request.send().await.map_err(|e| kinesis_error("GetShardIterator")(e.into()))?.shard_iterator;
            let mut records = Vec::new();
            while let Some(current) = iterator.take() {
                let out = self
                    .client
                    .get_records()
                    .shard_iterator(current)
                    .limit(10_000)
                    .send()
                    .await
                    .map_err(|e| kinesis_error("GetRecords")(e.into()))?;
                let empty = out.records.is_empty();
                for r in out.records {
                    let arrival = r.approximate_arrival_timestamp.map(|t| t.as_secs_f64()).unwrap_or_default();
                    let record = StreamRecord::new(
                        &shard.shard_id,
                        &r.sequence_number,
                        &r.partition_key,
                        r.data.as_ref(),
                        arrival,
                    );
                    records.push(record.envelope(&source));
                }
                if empty || out.millis_behind_latest == Some(0) && out.next_shard_iterator.is_none() {
                    break;
                }
                iterator = out.next_shard_iterator;
            }
            if let Some(last) = records.last().and_then(|r| r["sequenceNumber"].as_str()) {
                self.checkpoints.lock().expect("checkpoint lock").insert(shard.shard_id.clone(), last.to_owned());
            }
            let payload_len = |r: &Value| serde_json::to_vec(r).map_or(0, |b| b.len());
            batches.extend(cut_batches(records, batch_size, INVOCATION_PAYLOAD_LIMIT, payload_len));
        }
        Ok(batches)
    }
}

/// The same records as the Lambda event source mapping delivers them: `{"Records":[...]}` with
/// the Kinesis fields nested under `kinesis`.
pub fn as_event_source_mapping(records: &[Value]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": r["kinesisSchemaVersion"], "partitionKey": r["partitionKey"],
                    "sequenceNumber": r["sequenceNumber"], "data": r["data"],
                    "approximateArrivalTimestamp": r["approximateArrivalTimestamp"],
                },
                "eventSource": r["eventSource"], "eventVersion": r["eventVersion"], "eventID": r["eventID"],
                "eventName": r["eventName"], "invokeIdentityArn": r["invokeIdentityArn"],
                "awsRegion": r["awsRegion"], "eventSourceARN": r["eventSourceARN"],
            })
        })
        .collect();
    json!({ "Records": records })
}
