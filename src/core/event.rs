//! Batch shapes in (the Pipe's bare array, the event source mapping's `{"Records":[...]}`),
//! the partial-batch response out, and the EventBridge envelope inside each record.
//!
//! Decoding is deliberately lenient at the batch level and strict per record: one malformed
//! record must become a counted poison record, never a failed invocation that blocks the shard.
//! `decode_batch` turns a whole batch into findings (`Candidate`s) and record slots.

use std::fmt;

use aws_lambda_events::kinesis::KinesisEventRecord;
use aws_lambda_events::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::core::finding::Finding;
use crate::core::outcome::{BatchTally, FindingOutcome, RecordOutcome, RecordSkip, RecordSlot, SkipReason};

/// Which delivery shape a batch came in; it decides the identifier a failed record is reported by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchShape {
    /// EventBridge Pipe → Lambda: a bare JSON array; failures are reported by `eventID`.
    Pipe,
    /// Lambda event source mapping: `{"Records":[...]}`; failures are reported by `sequenceNumber`.
    EventSourceMapping,
}

/// A batch as it arrives, each record still raw so that one bad record cannot fail the rest.
#[derive(Debug)]
pub struct IncomingBatch {
    pub shape: BatchShape,
    pub records: Vec<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for IncomingBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written because the shape is decided by the top-level token (array or object),
        // which `#[serde(untagged)]` can only do by buffering the whole 6 MB batch twice.
        struct BatchVisitor;

        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = IncomingBatch;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a JSON array of Kinesis records or an object {"Records": [...]}"#)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IncomingBatch, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(record) = seq.next_element::<Box<RawValue>>()? {
                    records.push(record);
                }
                Ok(IncomingBatch { shape: BatchShape::Pipe, records })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IncomingBatch, A::Error> {
                let mut records = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "Records" {
                        records = Some(map.next_value::<Vec<Box<RawValue>>>()?);
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                let records = records.ok_or_else(|| de::Error::missing_field("Records"))?;
                Ok(IncomingBatch { shape: BatchShape::EventSourceMapping, records })
            }
        }

        deserializer.deserialize_any(BatchVisitor)
    }
}

/// One Kinesis record, whichever shape it came in, with its data base64-decoded.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// The identifier this record is reported by if it fails: eventID or sequenceNumber.
    pub item_identifier: String,
    pub partition_key: String,
    /// Seconds since the epoch, when Kinesis accepted the record; drives the record-age metric.
    pub approximate_arrival: Option<f64>,
    pub data: Vec<u8>,
}

/// Why a record can never be processed; such records are counted and logged, never retried.
#[derive(Debug, thiserror::Error)]
pub enum PoisonRecord {
    #[error("record is not a Kinesis record of the {shape:?} shape: {source}")]
    Malformed {
        shape: BatchShape,
        #[source]
        source: serde_json::Error,
    },
    #[error("record data is not valid base64: {source}")]
    Base64 {
        #[source]
        source: base64::DecodeError,
    },
    #[error("record data is not an EventBridge event: {source}")]
    NotAnEvent {
        #[source]
        source: serde_json::Error,
    },
    #[error("record has no identifier to report it by ({field} is empty)")]
    NoIdentifier { field: &'static str },
}

/// The Pipe's flattened record. Only the fields we read; the rest are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PipeRecord {
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(default)]
    partition_key: String,
    data: String,
    #[serde(default)]
    approximate_arrival_timestamp: Option<f64>,
}

/// Best effort at naming a record in logs even when it does not parse.
pub fn raw_record_id(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Ids {
        #[serde(rename = "eventID")]
        event_id: Option<String>,
    }
    serde_json::from_str::<Ids>(raw.get()).ok().and_then(|ids| ids.event_id)
}

impl StreamRecord {
    pub fn decode(shape: BatchShape, raw: &RawValue) -> Result<Self, PoisonRecord> {
        let malformed = |source| PoisonRecord::Malformed { shape, source };
        match shape {
            BatchShape::Pipe => {
                let record: PipeRecord = serde_json::from_str(raw.get()).map_err(malformed)?;
                if record.event_id.is_empty() {
                    return Err(PoisonRecord::NoIdentifier { field: "eventID" });
                }
                let data = base64::engine::general_purpose::STANDARD
                    .decode(record.data.as_bytes())
                    .map_err(|source| PoisonRecord::Base64 { source })?;
                Ok(StreamRecord {
                    item_identifier: record.event_id,
                    partition_key: record.partition_key,
                    approximate_arrival: record.approximate_arrival_timestamp,
                    data,
                })
            }
            BatchShape::EventSourceMapping => {
                let record: KinesisEventRecord = serde_json::from_str(raw.get()).map_err(malformed)?;
                let kinesis = record.kinesis;
                if kinesis.sequence_number.is_empty() {
                    return Err(PoisonRecord::NoIdentifier { field: "kinesis.sequenceNumber" });
                }
                let arrival = kinesis.approximate_arrival_timestamp.0;
                Ok(StreamRecord {
                    item_identifier: kinesis.sequence_number,
                    partition_key: kinesis.partition_key,
                    approximate_arrival: Some(arrival.timestamp_millis() as f64 / 1000.0),
                    data: kinesis.data.0,
                })
            }
        }
    }
}

pub const DETAIL_TYPE_IMPORTED: &str = "Security Hub Findings - Imported";
pub const DETAIL_TYPE_CUSTOM_ACTION: &str = "Security Hub Findings - Custom Action";
/// The new Security Hub's event: one OCSF finding in `detail.findings`.
pub const DETAIL_TYPE_IMPORTED_V2: &str = "Findings Imported V2";
pub const SOURCE_SECURITY_HUB: &str = "aws.securityhub";

/// What kind of Security Hub event a record carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Imported,
    /// "Findings Imported V2": OCSF findings of the new Security Hub.
    ImportedV2,
    CustomAction {
        action_name: String,
    },
}

/// The EventBridge envelope, as far as we read it.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type", default)]
    detail_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    detail: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    #[serde(default)]
    findings: Vec<Box<RawValue>>,
    #[serde(rename = "actionName", default)]
    action_name: Option<String>,
}

/// Why one finding of an event cannot be read: a counted skip, never a failed batch.
#[derive(Debug, thiserror::Error)]
pub enum BadFinding {
    #[error("ASFF finding is malformed: {0}")]
    Asff(#[source] serde_json::Error),
    #[error("OCSF finding is unusable: {0}")]
    Ocsf(#[source] crate::core::ocsf::OcsfDecodeError),
}

/// A decoded Security Hub event: its kind and each finding, parsed or not.
#[derive(Debug)]
pub struct SecurityHubEvent {
    pub kind: EventKind,
    pub findings: Vec<Result<Finding, BadFinding>>,
}

/// Why a well-formed event is not ours to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOurs {
    /// Another source or detail-type.
    UnsupportedEvent { source: String, detail_type: String },
}

/// Parses the EventBridge event in a record's data.
pub fn decode_event(data: &[u8]) -> Result<Result<SecurityHubEvent, NotOurs>, PoisonRecord> {
    let envelope: Envelope = serde_json::from_slice(data).map_err(|source| PoisonRecord::NotAnEvent { source })?;
    let not_ours =
        || NotOurs::UnsupportedEvent { source: envelope.source.clone(), detail_type: envelope.detail_type.clone() };
    if envelope.source != SOURCE_SECURITY_HUB {
        return Ok(Err(not_ours()));
    }
    let (is_custom_action, is_v2) = match envelope.detail_type.as_str() {
        DETAIL_TYPE_IMPORTED => (false, false),
        DETAIL_TYPE_CUSTOM_ACTION => (true, false),
        DETAIL_TYPE_IMPORTED_V2 => (false, true),
        _ => return Ok(Err(not_ours())),
    };
    let detail: Detail = match &envelope.detail {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|source| PoisonRecord::NotAnEvent { source })?,
        None => Detail { findings: Vec::new(), action_name: None },
    };
    let kind = if is_custom_action {
        EventKind::CustomAction { action_name: detail.action_name.unwrap_or_default() }
    } else if is_v2 {
        EventKind::ImportedV2
    } else {
        EventKind::Imported
    };
    let findings = detail
        .findings
        .iter()
        .map(|raw| {
            if is_v2 {
                crate::core::ocsf::decode(raw.get()).map_err(BadFinding::Ocsf)
            } else {
                serde_json::from_str::<Finding>(raw.get()).map_err(BadFinding::Asff)
            }
        })
        .collect();
    Ok(Ok(SecurityHubEvent { kind, findings }))
}

/// A finding of the batch, with the record it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub record: usize,
    pub finding: Finding,
    /// The event it came in: custom actions may ask for an investigation.
    pub kind: EventKind,
}

/// A batch decoded: one slot per record (its outcome when already decided, else the indices of
/// its findings), the findings, and the records' ages.
pub struct Decoded {
    pub tally: BatchTally,
    pub records: Vec<RecordSlot>,
    pub candidates: Vec<Candidate>,
    pub record_ages: Vec<f64>,
}

/// Decodes every record and every finding, deciding the outcome of the records that can never be
/// processed (poison, other events, no findings) and of unreadable findings. No I/O: the handler,
/// the pure-path benchmark and the fuzzer run the same code.
///
/// Takes the batch by value and frees each raw record once decoded, so a 6 MB batch is not held
/// twice (raw and decoded) at its peak.
pub fn decode_batch(batch: IncomingBatch, now_epoch: f64) -> Decoded {
    let mut tally = BatchTally { records_in: batch.records.len(), ..Default::default() };
    let mut slots = Vec::with_capacity(batch.records.len());
    let shape = batch.shape;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut record_ages = Vec::new();

    for (index, raw) in batch.records.into_iter().enumerate() {
        let record = match StreamRecord::decode(shape, &raw) {
            Ok(record) => record,
            Err(error) => {
                let event_id = raw_record_id(&raw);
                tracing::warn!(record = index, event_id = event_id.as_deref(), error = %error, "poison record: counted, not retried");
                slots.push(RecordSlot { identifier: None, outcome: Some(RecordOutcome::Poison), findings: vec![] });
                continue;
            }
        };
        if let Some(arrival) = record.approximate_arrival {
            record_ages.push((now_epoch - arrival).max(0.0));
        }
        let mut slot = RecordSlot { identifier: Some(record.item_identifier.clone()), outcome: None, findings: vec![] };
        match decode_event(&record.data) {
            Err(error) => {
                tracing::warn!(item_identifier = %record.item_identifier, error = %error, "poison record: counted, not retried");
                slot.outcome = Some(RecordOutcome::Poison);
            }
            Ok(Err(NotOurs::UnsupportedEvent { source, detail_type })) => {
                tracing::info!(item_identifier = %record.item_identifier, %source, %detail_type, "record skipped: not a Security Hub findings event");
                slot.outcome = Some(RecordOutcome::Skipped(RecordSkip::UnsupportedEvent));
            }
            Ok(Ok(event)) => {
                if event.findings.is_empty() {
                    slot.outcome = Some(RecordOutcome::Skipped(RecordSkip::NoFindings));
                }
                let kind = event.kind;
                for finding in event.findings {
                    tally.findings_in += 1;
                    match finding {
                        Ok(finding) => {
                            slot.findings.push(candidates.len());
                            candidates.push(Candidate { record: index, finding, kind: kind.clone() });
                        }
                        Err(error) => {
                            tracing::warn!(item_identifier = %record.item_identifier, error = %error, "finding skipped: malformed");
                            tally.count_finding(&FindingOutcome::Skipped(SkipReason::MalformedFinding));
                        }
                    }
                }
            }
        }
        slots.push(slot);
    }
    Decoded { tally, records: slots, candidates, record_ages }
}

/// Builds the partial-batch response; an empty list tells the poller the whole batch succeeded.
pub fn batch_response<'a>(failed_identifiers: impl IntoIterator<Item = &'a str>) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    for identifier in failed_identifiers {
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(identifier.to_owned());
        response.batch_item_failures.push(failure);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const EVENT: &str = r#"{"version":"0","id":"e1","detail-type":"Security Hub Findings - Imported","source":"aws.securityhub","account":"111122223333","region":"us-east-1","detail":{"findings":[{"Id":"f1","ProductArn":"arn:p","AwsAccountId":"111122223333","UpdatedAt":"2026-01-01T00:00:00Z"}]}}"#;

    #[test]
    fn pipe_array_is_decoded_and_reported_by_event_id() {
        let body = format!(
            r#"[{{"eventID":"shardId-000000000006:1","partitionKey":"111122223333","sequenceNumber":"1","data":"{}","approximateArrivalTimestamp":1545084650.987}}]"#,
            b64(EVENT)
        );
        let batch: IncomingBatch = serde_json::from_str(&body).unwrap();
        assert_eq!(batch.shape, BatchShape::Pipe);
        let record = StreamRecord::decode(batch.shape, &batch.records[0]).unwrap();
        assert_eq!(record.item_identifier, "shardId-000000000006:1");
        assert_eq!(record.approximate_arrival, Some(1545084650.987));
        let event = decode_event(&record.data).unwrap().unwrap();
        assert_eq!(event.kind, EventKind::Imported);
        assert_eq!(event.findings.len(), 1);
    }

    #[test]
    fn event_source_mapping_is_reported_by_sequence_number() {
        let body = format!(
            r#"{{"Records":[{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"4959","data":"{}","approximateArrivalTimestamp":1545084650.987}},"eventSource":"aws:kinesis","eventID":"shardId-000000000006:4959"}}]}}"#,
            b64(EVENT)
        );
        let batch: IncomingBatch = serde_json::from_str(&body).unwrap();
        assert_eq!(batch.shape, BatchShape::EventSourceMapping);
        let record = StreamRecord::decode(batch.shape, &batch.records[0]).unwrap();
        assert_eq!(record.item_identifier, "4959");
        assert_eq!(record.approximate_arrival, Some(1545084650.987));
    }

    #[test]
    fn one_malformed_record_does_not_spoil_the_batch() {
        let body = format!(r#"[{{"eventID":"a","data":"!!!"}}, 42, {{"eventID":"c","data":"{}"}}]"#, b64(EVENT));
        let batch: IncomingBatch = serde_json::from_str(&body).unwrap();
        let decoded: Vec<_> = batch.records.iter().map(|r| StreamRecord::decode(batch.shape, r)).collect();
        assert!(matches!(decoded[0], Err(PoisonRecord::Base64 { .. })));
        assert!(matches!(decoded[1], Err(PoisonRecord::Malformed { .. })));
        assert!(decoded[2].is_ok());
        assert_eq!(raw_record_id(&batch.records[0]).as_deref(), Some("a"));
    }

    #[test]
    fn v2_events_carry_ocsf_findings_and_a_bad_one_is_a_finding_error() {
        let v2 = r#"{"source":"aws.securityhub","detail-type":"Findings Imported V2","detail":{"findings":[
            {"metadata":{"uid":"m1","product":{"uid":"p"}},"cloud":{"account":{"uid":"111122223333"}},"finding_info":{"uid":"f"}},
            {"metadata":{"product":{"uid":"p"}}}, {"metadata":"x"}]}}"#;
        let event = decode_event(v2.as_bytes()).unwrap().unwrap();
        assert_eq!(event.kind, EventKind::ImportedV2);
        assert_eq!(event.findings.len(), 3);
        let first = event.findings[0].as_ref().unwrap();
        assert_eq!(first.hub(), crate::core::finding::Hub::V2);
        assert_eq!(first.aws_account_id, "111122223333");
        assert!(matches!(event.findings[1], Err(BadFinding::Ocsf(_))));
        assert!(matches!(event.findings[2], Err(BadFinding::Ocsf(_))));
    }

    #[test]
    fn other_sources_are_not_ours() {
        let v2_insight = r#"{"source":"aws.securityhub","detail-type":"Security Hub Insight Results","detail":{}}"#;
        assert!(matches!(decode_event(v2_insight.as_bytes()).unwrap(), Err(NotOurs::UnsupportedEvent { .. })));
        let other = r#"{"source":"aws.guardduty","detail-type":"GuardDuty Finding","detail":{}}"#;
        assert!(decode_event(other.as_bytes()).unwrap().is_err());
        assert!(matches!(decode_event(b"{not json"), Err(PoisonRecord::NotAnEvent { .. })));
    }

    #[test]
    fn custom_action_keeps_every_finding_and_the_action_name() {
        let event = r#"{"source":"aws.securityhub","detail-type":"Security Hub Findings - Custom Action","detail":{"actionName":"investigate","findings":[{"Id":"a","ProductArn":"p","AwsAccountId":"1"},{"Id":"b","ProductArn":"p","AwsAccountId":"1"},{"Id":3}]}}"#;
        let event = decode_event(event.as_bytes()).unwrap().unwrap();
        assert_eq!(event.kind, EventKind::CustomAction { action_name: "investigate".into() });
        assert_eq!(event.findings.len(), 3);
        assert!(event.findings[2].is_err());
    }

    #[test]
    fn response_lists_identifiers_in_the_wire_format() {
        let json = serde_json::to_string(&batch_response(["x:1", "x:2"])).unwrap();
        assert_eq!(json, r#"{"batchItemFailures":[{"itemIdentifier":"x:1"},{"itemIdentifier":"x:2"}]}"#);
        assert_eq!(serde_json::to_string(&batch_response([])).unwrap(), r#"{"batchItemFailures":[]}"#);
    }

    #[test]
    fn top_level_garbage_is_an_error() {
        assert!(serde_json::from_str::<IncomingBatch>(r#"{"records":[]}"#).is_err());
        assert!(serde_json::from_str::<IncomingBatch>("3").is_err());
    }
}
