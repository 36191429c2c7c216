//! The EventBridge Pipe's part, as the harness plays it: a Kinesis record in the envelope the
//! Pipe hands its Lambda target (design.md §2), batches cut where the Pipe cuts them (at the
//! batch size and at Lambda's 6 MB invocation payload), and the redelivery of the records a
//! batch reports failed. The simulator, the local harness, the demo and the local-stack tests
//! all go through these three, so each plays the Pipe the same way.

use std::collections::{HashSet, VecDeque};

use base64::Engine as _;
use serde_json::{Value, json};

use aws_lambda_events::streams::KinesisBatchItemFailure;
use securityhub_enricher::core::event::IncomingBatch;

/// Lambda's invocation payload limit for a synchronous invocation (6 MB), which caps a Pipe
/// batch whatever its BatchSize. Counted as 6 MiB of the JSON array the Pipe sends.
pub const INVOCATION_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// The envelope's fields that name where records come from, the same for every record.
#[derive(Debug, Clone)]
pub struct PipeSource {
    pub stream_arn: String,
    pub region: String,
    pub invoke_identity_arn: String,
}

impl Default for PipeSource {
    fn default() -> Self {
        PipeSource {
            stream_arn: "arn:aws:kinesis:us-east-1:111111111111:stream/securityhub-findings".into(),
            region: crate::loadgen::REGION.into(),
            invoke_identity_arn: "arn:aws:iam::111111111111:role/securityhub-enricher-pipe".into(),
        }
    }
}

/// One Kinesis record as it sits on a shard.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    /// The record's data (the whole EventBridge event), base64-encoded as the Pipe sends it.
    pub data: String,
    /// Seconds since the epoch.
    pub arrival: f64,
}

impl StreamRecord {
    /// A record of `data` (the raw bytes), encoded as the Pipe encodes it.
    pub fn new(shard_id: &str, sequence_number: &str, partition_key: &str, data: &[u8], arrival: f64) -> Self {
        StreamRecord {
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number.to_owned(),
            partition_key: partition_key.to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(data),
            arrival,
        }
    }

    /// The Pipe's `eventID`, by which failed records are reported.
    pub fn event_id(&self) -> String {
        format!("{}:{}", self.shard_id, self.sequence_number)
    }

    /// The element of the bare JSON array the Pipe delivers: every field of design.md §2.
    pub fn envelope(&self, source: &PipeSource) -> Value {
        json!({
            "kinesisSchemaVersion": "1.0",
            "partitionKey": self.partition_key,
            "sequenceNumber": self.sequence_number,
            "data": self.data,
            "approximateArrivalTimestamp": self.arrival,
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": self.event_id(),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": source.invoke_identity_arn,
            "awsRegion": source.region,
            "eventSourceARN": source.stream_arn,
        })
    }

    /// Bytes this record takes in the invocation payload (its serialized envelope).
    pub fn payload_len(&self, source: &PipeSource) -> usize {
        serde_json::to_vec(&self.envelope(source)).map_or(0, |b| b.len())
    }
}

/// The shard of the batches the harness makes by hand (tests, benchmarks).
pub const HAND_MADE_SHARD: &str = "shardId-000000000000";

/// The record that carries the `n`-th of a hand-made batch's events: on [`HAND_MADE_SHARD`],
/// sequence number `n`, keyed by the account of the event's first finding (as the EventBridge
/// rule keys it), arrived at `n` ms past a fixed instant.
pub fn record_of_event(event: &Value, n: usize) -> StreamRecord {
    let key = event["detail"]["findings"][0]["AwsAccountId"].as_str().unwrap_or("000000000000");
    let data = serde_json::to_vec(event).expect("a JSON value serializes");
    StreamRecord::new(HAND_MADE_SHARD, &sequence_number(n), key, &data, 1_795_000_000.0 + n as f64 / 1000.0)
}

/// The sequence number of the `n`-th record of a hand-made batch.
pub fn sequence_number(n: usize) -> String {
    format!("{n:056}")
}

/// The `eventID` of the `n`-th record of a hand-made batch.
pub fn event_id(n: usize) -> String {
    format!("{HAND_MADE_SHARD}:{}", sequence_number(n))
}

/// A Pipe batch (the bare JSON array) of these events, one per record, in order.
pub fn batch_of_events<'a>(events: impl IntoIterator<Item = &'a Value>) -> Value {
    let source = PipeSource::default();
    Value::Array(events.into_iter().enumerate().map(|(n, e)| record_of_event(e, n).envelope(&source)).collect())
}

/// The same batch as the enricher takes it.
pub fn incoming_batch_of_events<'a>(events: impl IntoIterator<Item = &'a Value>) -> IncomingBatch {
    serde_json::from_value(batch_of_events(events)).expect("a Pipe batch parses")
}

/// How many of the records at the front (of the given payload sizes) make the next batch: at
/// most `batch_size`, and no more than a JSON array of them within `payload_limit` holds
/// (`[`, the records, a comma between each, `]`). Never none while a record is waiting: a
/// single record is under the limit, as Kinesis records are at most 1 MiB.
pub fn next_batch_len(sizes: impl IntoIterator<Item = usize>, batch_size: usize, payload_limit: usize) -> usize {
    let mut bytes = 2;
    let mut n = 0;
    for size in sizes.into_iter().take(batch_size.max(1)) {
        let added = size + usize::from(n > 0);
        if n > 0 && bytes + added > payload_limit {
            break;
        }
        bytes += added;
        n += 1;
    }
    n
}

/// Cuts a shard's records, in order, into batches as the Pipe does (see [`next_batch_len`]).
pub fn cut_batches<T>(
    records: Vec<T>,
    batch_size: usize,
    payload_limit: usize,
    payload_len: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let sizes: Vec<usize> = records.iter().map(&payload_len).collect();
    let mut batches = Vec::new();
    let mut rest = records.into_iter();
    let mut at = 0;
    while at < sizes.len() {
        let n = next_batch_len(sizes[at..].iter().copied(), batch_size, payload_limit);
        batches.push(rest.by_ref().take(n).collect());
        at += n;
    }
    batches
}

/// The event ids a batch's response reports failed.
pub fn failed_ids(failures: &[KinesisBatchItemFailure]) -> HashSet<String> {
    failures.iter().filter_map(|f| f.item_identifier.clone()).collect()
}

/// Splits a delivered batch as the Pipe does after a partial-batch response: the records up to
/// the first one reported failed are done, and that record and every one after it (failed or
/// not: the Pipe resumes from the lowest failed sequence number of the shard) are delivered
/// again. Returns (done, again), both in order.
pub fn after_response<T>(batch: Vec<T>, failed: &HashSet<String>, event_id: impl Fn(&T) -> String) -> (Vec<T>, Vec<T>) {
    let first_failed = batch.iter().position(|r| failed.contains(&event_id(r))).unwrap_or(batch.len());
    let mut done = batch;
    let again = done.split_off(first_failed);
    (done, again)
}

/// Puts the records to deliver again back at the front of a shard's queue, in order, ahead of
/// what was not yet read. Returns how many.
pub fn redeliver<T>(queue: &mut VecDeque<T>, again: Vec<T>) -> usize {
    let n = again.len();
    for record in again.into_iter().rev() {
        queue.push_front(record);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, data_len: usize) -> StreamRecord {
        StreamRecord::new("shardId-000000000000", &format!("{i:020}"), "111122223333", &vec![b'x'; data_len], 1.5)
    }

    #[test]
    fn the_envelope_carries_every_field_the_pipe_sends_and_its_length_is_counted() {
        let source = PipeSource::default();
        let r = record(7, 30);
        let envelope = r.envelope(&source);
        for field in [
            "kinesisSchemaVersion",
            "partitionKey",
            "sequenceNumber",
            "data",
            "approximateArrivalTimestamp",
            "eventSource",
            "eventVersion",
            "eventID",
            "eventName",
            "invokeIdentityArn",
            "awsRegion",
            "eventSourceARN",
        ] {
            assert!(envelope.get(field).is_some(), "{field}");
        }
        assert_eq!(envelope["data"].as_str().unwrap().len(), 40, "base64: 30 bytes → 40 characters");
        assert_eq!(r.payload_len(&source), serde_json::to_vec(&envelope).unwrap().len());
        let batch: IncomingBatch = serde_json::from_value(json!([envelope])).unwrap();
        assert_eq!(batch.records.len(), 1);
    }

    #[test]
    fn a_hand_made_batch_keys_each_event_by_its_first_account_in_order() {
        let events: Vec<Value> =
            (0..3).map(|n| json!({"detail": {"findings": [{"AwsAccountId": format!("{n:012}")}]}})).collect();
        let batch = batch_of_events(&events);
        assert_eq!(batch[2]["partitionKey"], "000000000002");
        assert_eq!(batch[1]["eventID"], event_id(1));
        assert_eq!(incoming_batch_of_events(&events).records.len(), 3);
    }

    #[test]
    fn batches_are_cut_at_the_batch_size_and_at_the_payload_limit() {
        // 10 records of 100 bytes: an array of n of them takes 2 + 100 n + (n - 1) bytes.
        let sizes = vec![100; 10];
        assert_eq!(next_batch_len(sizes.clone(), 4, INVOCATION_PAYLOAD_LIMIT), 4);
        assert_eq!(next_batch_len(sizes.clone(), 100, 2 + 300 + 2), 3, "exactly three fit");
        assert_eq!(next_batch_len(sizes.clone(), 100, 2 + 300 + 1), 2, "one byte short of three");
        assert_eq!(next_batch_len(vec![500], 100, 10), 1, "a record alone is never held back");
        assert_eq!(next_batch_len(Vec::new(), 100, 10), 0);
        let cut = cut_batches((0..10).collect::<Vec<usize>>(), 4, 2 + 300 + 2, |_| 100);
        assert_eq!(cut, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8], vec![9]]);
    }

    #[test]
    fn a_partial_failure_delivers_again_from_the_first_failed_record_on() {
        let batch: Vec<StreamRecord> = (0..5).map(|i| record(i, 1)).collect();
        let failed = HashSet::from([batch[3].event_id(), batch[1].event_id()]);
        let (done, again) = after_response(batch, &failed, StreamRecord::event_id);
        assert_eq!(done.len(), 1);
        assert_eq!(again.iter().map(|r| r.sequence_number.clone()).collect::<Vec<_>>(), {
            (1..5).map(|i| format!("{i:020}")).collect::<Vec<_>>()
        });
        let mut queue: VecDeque<StreamRecord> = VecDeque::from([record(9, 1)]);
        assert_eq!(redeliver(&mut queue, again), 4);
        assert_eq!(queue.iter().map(|r| r.sequence_number.clone()).collect::<Vec<_>>(), {
            [1, 2, 3, 4, 9].iter().map(|i| format!("{i:020}")).collect::<Vec<_>>()
        });
        let (done, again) = after_response(vec![record(0, 1)], &HashSet::new(), StreamRecord::event_id);
        assert_eq!((done.len(), again.len()), (1, 0));
    }
}
