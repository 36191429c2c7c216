//! Dead-lettered stream batches, pure: the dead letter's shape, Kinesis sequence-number order,
//! which records of a read belong to the batch, and PutRecords' per-call limits.
//!
//! A Kinesis source's dead letter (Lambda event source mapping on-failure destination, and the
//! EventBridge Pipe's dead-letter queue for stream sources) holds the batch's position, not its
//! records: `KinesisBatchInfo` {shardId, startSequenceNumber, endSequenceNumber, batchSize,
//! streamArn, approximateArrivalOf{First,Last}Record} (Lambda developer guide, "Retain discarded
//! batch records for a Kinesis Data Streams event source").

use std::cmp::Ordering;

use serde::Deserialize;

/// PutRecords: at most 500 records per call (Kinesis API reference).
pub const PUT_RECORDS_MAX_RECORDS: usize = 500;
/// PutRecords: at most 5 MiB per call, data blobs and partition keys together.
pub const PUT_RECORDS_MAX_BYTES: usize = 5 * 1024 * 1024;

/// The batch a dead letter points at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    /// Records in the batch, when the dead letter says.
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub stream_arn: Option<String>,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "KinesisBatchInfo")]
    kinesis_batch_info: Option<KinesisBatchInfo>,
}

/// Why a dead letter cannot be redriven as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeadLetterError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no KinesisBatchInfo (not a dead letter of a Kinesis source)")]
    NotKinesis,
    #[error("sequence numbers {start:?}..{end:?} are not decimal, or start after end")]
    BadRange { start: String, end: String },
}

impl KinesisBatchInfo {
    /// Parses one dead-letter message body.
    pub fn parse(body: &str) -> Result<Self, DeadLetterError> {
        let envelope: Envelope = serde_json::from_str(body).map_err(|e| DeadLetterError::NotJson(e.to_string()))?;
        let info = envelope.kinesis_batch_info.ok_or(DeadLetterError::NotKinesis)?;
        let valid = is_sequence_number(&info.start_sequence_number)
            && is_sequence_number(&info.end_sequence_number)
            && compare_sequence_numbers(&info.start_sequence_number, &info.end_sequence_number) != Ordering::Greater;
        if !valid {
            return Err(DeadLetterError::BadRange {
                start: info.start_sequence_number.clone(),
                end: info.end_sequence_number.clone(),
            });
        }
        Ok(info)
    }

    /// The stream's name, from `streamArn` (`arn:…:kinesis:<region>:<account>:stream/<name>`).
    pub fn stream_name(&self) -> Option<&str> {
        self.stream_arn.as_deref().and_then(|arn| arn.rsplit_once(":stream/")).map(|(_, name)| name)
    }

    /// Whether a record's sequence number lies within the batch.
    pub fn contains(&self, sequence_number: &str) -> bool {
        compare_sequence_numbers(sequence_number, &self.start_sequence_number) != Ordering::Less
            && compare_sequence_numbers(sequence_number, &self.end_sequence_number) != Ordering::Greater
    }

    /// Whether a record lies past the batch's end (reading can stop).
    pub fn is_past_end(&self, sequence_number: &str) -> bool {
        compare_sequence_numbers(sequence_number, &self.end_sequence_number) == Ordering::Greater
    }
}

fn is_sequence_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Kinesis sequence numbers are decimal strings of up to 128 digits, beyond any integer type:
/// compared as numbers, shorter (leading zeros aside) is smaller, then digit by digit.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Sizes (data + partition key bytes) of records, cut into consecutive PutRecords calls of at
/// most 500 records and 5 MiB each: the index ranges, in order. A record alone over the limit
/// (Kinesis accepts at most 1 MiB per record, so it cannot have been written) gets a call of
/// its own, and Kinesis refuses it.
pub fn put_calls(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start == PUT_RECORDS_MAX_RECORDS || (i > start && bytes + size > PUT_RECORDS_MAX_BYTES);
        if full {
            calls.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        calls.push(start..sizes.len());
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The Lambda developer guide's example invocation record for a Kinesis stream.
    const DOCUMENTED: &str = r#"{
        "requestContext": {"requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0", "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {"shardId": "shardId-000000000001",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500, "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"}}"#;

    #[test]
    fn the_documented_dead_letter_parses() {
        let info = KinesisBatchInfo::parse(DOCUMENTED).unwrap();
        assert_eq!(info.shard_id, "shardId-000000000001");
        assert_eq!(info.batch_size, Some(500));
        assert_eq!(info.stream_name(), Some("mystream"));
        assert!(info.contains("49601189658422359378836298521827638475320189012309704722"));
        assert!(info.contains("49601189658422359378836298522902373528957594348623495186"));
        assert!(info.contains("49601189658422359378836298522000000000000000000000000000"));
        assert!(!info.contains("49601189658422359378836298521827638475320189012309704721"));
        assert!(info.is_past_end("49601189658422359378836298522902373528957594348623495187"));
    }

    #[test]
    fn other_messages_are_refused_with_the_reason() {
        assert!(matches!(KinesisBatchInfo::parse("not json"), Err(DeadLetterError::NotJson(_))));
        assert_eq!(
            KinesisBatchInfo::parse(r#"{"DDBStreamBatchInfo": {}, "KinesisBatchInfo": null}"#),
            Err(DeadLetterError::NotKinesis)
        );
        let reversed = DOCUMENTED.replace("49601189658422359378836298521827638475320189012309704722", "5");
        assert_eq!(KinesisBatchInfo::parse(&reversed).map(|_| ()), Ok(()), "5 < the end");
        let reversed = DOCUMENTED.replace(
            "49601189658422359378836298521827638475320189012309704722",
            "59601189658422359378836298521827638475320189012309704722",
        );
        assert!(matches!(KinesisBatchInfo::parse(&reversed), Err(DeadLetterError::BadRange { .. })));
    }

    #[test]
    fn put_calls_respect_both_limits() {
        assert_eq!(put_calls(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(put_calls(&[10; 1001]), vec![0..500, 500..1000, 1000..1001]);
        let mib = 1024 * 1024;
        assert_eq!(put_calls(&[mib; 12]), vec![0..5, 5..10, 10..12]);
        assert_eq!(put_calls(&[mib / 2, 6 * mib, 10]), vec![0..1, 1..2, 2..3]);
    }

    proptest! {
        #[test]
        fn sequence_numbers_compare_as_numbers(a in 0u128..u128::MAX, b in 0u128..u128::MAX, pad in 0usize..3) {
            let padded = format!("{}{}", "0".repeat(pad), a);
            prop_assert_eq!(compare_sequence_numbers(&padded, &b.to_string()), a.cmp(&b));
        }

        #[test]
        fn put_calls_cover_every_record_once_within_the_limits(sizes in proptest::collection::vec(1usize..1_200_000, 0..1200)) {
            let calls = put_calls(&sizes);
            let mut next = 0;
            for call in &calls {
                prop_assert_eq!(call.start, next);
                prop_assert!(!call.is_empty() && call.len() <= PUT_RECORDS_MAX_RECORDS);
                let bytes: usize = sizes[call.clone()].iter().sum();
                prop_assert!(call.len() == 1 || bytes <= PUT_RECORDS_MAX_BYTES);
                next = call.end;
            }
            prop_assert_eq!(next, sizes.len());
        }
    }
}
