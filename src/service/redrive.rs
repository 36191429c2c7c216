//! Sends dead-lettered stream batches back: for each dead letter, reads the batch's records
//! back from the stream while it retains them, puts them on the stream again with their
//! partition keys, and deletes the dead letter only when every record of the batch was sent.
//! What could not be sent is said per dead letter, and the letter stays in the queue.

use std::time::Duration;

use serde::Serialize;

use crate::core::redrive::{KinesisBatchInfo, put_calls};
use crate::ports::redrive::{DeadLetter, DeadLetterQueue, StreamRecord, StreamReplay};

/// Failed PutRecords entries (throttled, internal failures) are sent again this many times.
const PUT_ATTEMPTS: u32 = 5;
/// Received dead letters stay hidden this long: time to read and put a batch of 10,000 records.
const VISIBILITY_SECONDS: i32 = 300;

#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// The stream the records go back on (and are read from).
    pub stream: String,
    /// Stop after this many dead letters.
    pub max_letters: usize,
    /// Read and report, send and delete nothing.
    pub dry_run: bool,
    /// Delete a dead letter whose records were all sent except those the stream no longer
    /// retains (they can never be sent; without this the letter stays, and its alarm with it).
    pub discard_expired: bool,
}

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Every record sent; the dead letter was deleted.
    Redriven,
    /// Every retained record sent, the rest past retention; deleted (`--discard-expired`).
    RedrivenExpiredDiscarded,
    /// Kept in the queue: something could not be sent, or the letter could not be read.
    Kept,
    /// `--dry-run`: nothing sent or deleted.
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LetterReport {
    pub message_id: String,
    pub shard_id: Option<String>,
    pub start_sequence_number: Option<String>,
    pub end_sequence_number: Option<String>,
    /// Records in the batch, as the dead letter says.
    pub batch_size: Option<u64>,
    /// Records of the batch the stream still held.
    pub records_found: usize,
    pub records_sent: usize,
    /// Records the stream no longer holds (past its retention, or their shard gone); `None`
    /// when some are missing but the dead letter does not say how many the batch had.
    pub records_past_retention: Option<u64>,
    /// Retained records PutRecords refused after every attempt, by error code.
    pub records_not_sent: usize,
    pub disposition: Disposition,
    /// Why the letter was kept, or what was discarded.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    pub letters: Vec<LetterReport>,
}

impl RedriveReport {
    pub fn records_sent(&self) -> usize {
        self.letters.iter().map(|l| l.records_sent).sum()
    }

    pub fn deleted(&self) -> usize {
        self.letters
            .iter()
            .filter(|l| matches!(l.disposition, Disposition::Redriven | Disposition::RedrivenExpiredDiscarded))
            .count()
    }

    pub fn kept(&self) -> usize {
        self.letters.iter().filter(|l| l.disposition == Disposition::Kept).count()
    }
}

/// Redrives up to `options.max_letters` dead letters.
pub async fn redrive(
    queue: &dyn DeadLetterQueue,
    stream: &dyn StreamReplay,
    options: &RedriveOptions,
) -> Result<RedriveReport, crate::ports::redrive::RedriveError> {
    let mut report = RedriveReport::default();
    while report.letters.len() < options.max_letters {
        let wanted = (options.max_letters - report.letters.len()).min(10) as i32;
        let letters = queue.receive(wanted, VISIBILITY_SECONDS).await?;
        if letters.is_empty() {
            break;
        }
        for letter in letters {
            report.letters.push(redrive_one(queue, stream, options, &letter).await?);
        }
    }
    Ok(report)
}

async fn redrive_one(
    queue: &dyn DeadLetterQueue,
    stream: &dyn StreamReplay,
    options: &RedriveOptions,
    letter: &DeadLetter,
) -> Result<LetterReport, crate::ports::redrive::RedriveError> {
    let mut report = LetterReport {
        message_id: letter.message_id.clone(),
        shard_id: None,
        start_sequence_number: None,
        end_sequence_number: None,
        batch_size: None,
        records_found: 0,
        records_sent: 0,
        records_past_retention: Some(0),
        records_not_sent: 0,
        disposition: Disposition::Kept,
        note: None,
    };
    let batch = match KinesisBatchInfo::parse(&letter.body) {
        Ok(batch) => batch,
        Err(e) => {
            report.note = Some(format!("not redriven: {e}"));
            return Ok(report);
        }
    };
    report.shard_id = Some(batch.shard_id.clone());
    report.start_sequence_number = Some(batch.start_sequence_number.clone());
    report.end_sequence_number = Some(batch.end_sequence_number.clone());
    report.batch_size = batch.batch_size;
    if let Some(name) = batch.stream_name()
        && name != options.stream
    {
        report.note = Some(format!("a batch of stream {name}, not {}: not redriven", options.stream));
        return Ok(report);
    }

    let read = stream.read(&options.stream, &batch).await?;
    report.records_found = read.records.len();
    let starts_at_start = read.records.first().is_some_and(|r| r.sequence_number == batch.start_sequence_number);
    let mut missing = Vec::new();
    if read.shard_gone {
        missing.push(format!("shard {} no longer exists", batch.shard_id));
    } else if !starts_at_start {
        missing.push("the batch's first records are past the stream's retention".to_owned());
    }
    if !read.end_reached && !read.shard_gone {
        missing.push("the batch's end was not found in the shard".to_owned());
    }
    report.records_past_retention = match (missing.is_empty(), batch.batch_size) {
        (true, _) => Some(0),
        (false, Some(size)) => Some(size.saturating_sub(read.records.len() as u64)),
        (false, None) => None,
    };

    if options.dry_run {
        report.disposition = Disposition::DryRun;
        report.note = (!missing.is_empty()).then(|| missing.join("; "));
        return Ok(report);
    }

    let (sent, not_sent) = put_all(stream, &options.stream, &read.records).await?;
    report.records_sent = sent;
    report.records_not_sent = not_sent.len();
    let mut notes = missing.clone();
    if !not_sent.is_empty() {
        notes.push(format!("{} records not accepted by PutRecords ({})", not_sent.len(), summarize(&not_sent)));
    }
    let everything_sent = not_sent.is_empty() && missing.is_empty();
    let expired_only = not_sent.is_empty() && !missing.is_empty();
    if everything_sent || (expired_only && options.discard_expired) {
        queue.delete(letter).await?;
        report.disposition =
            if everything_sent { Disposition::Redriven } else { Disposition::RedrivenExpiredDiscarded };
    }
    report.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(report)
}

/// Puts `records` back in PutRecords calls of ≤ 500 records and ≤ 5 MiB, sending the entries a
/// call refused again (with backoff) up to `PUT_ATTEMPTS` times. Returns (records sent, the
/// error code of each record never accepted).
async fn put_all(
    stream: &dyn StreamReplay,
    name: &str,
    records: &[StreamRecord],
) -> Result<(usize, Vec<String>), crate::ports::redrive::RedriveError> {
    let sizes: Vec<usize> = records.iter().map(|r| r.data.len() + r.partition_key.len()).collect();
    let mut sent = 0;
    let mut never = Vec::new();
    for call in put_calls(&sizes) {
        let mut pending: Vec<StreamRecord> = records[call].to_vec();
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let failed = stream.put(name, &pending).await?;
            sent += pending.len() - failed.len();
            if failed.is_empty() {
                pending.clear();
                break;
            }
            if attempt + 1 == PUT_ATTEMPTS {
                never.extend(failed.iter().map(|(_, code)| code.clone()));
            }
            pending = failed.iter().map(|(i, _)| pending[*i].clone()).collect();
        }
    }
    Ok((sent, never))
}

fn summarize(codes: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for code in codes {
        *counts.entry(code).or_default() += 1;
    }
    counts.iter().map(|(code, n)| format!("{code} × {n}")).collect::<Vec<_>>().join(", ")
}
