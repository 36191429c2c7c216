//! The `Publisher`: sends a batch's enriched-finding events with PutEvents, 10 entries per
//! call, retrying throttled calls and failed entries with backoff within the deadline. Answers
//! with the members whose event could not be published, so the handler can fail their records
//! for retry: an event is published at least once, never silently lost.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::core::enriched_event::{EventEntry, MAX_ENTRIES_PER_CALL};
use crate::core::error::error_chain;
use crate::limits::backoff;
use crate::ports::events::{EventPublisher, PublishError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PublishStats {
    /// PutEvents calls made, retries included.
    pub calls: usize,
    pub published: usize,
    /// Events not published after every retry (their records are retried) or refused for good.
    pub failed: usize,
    /// Entries sent again after a failed entry or a failed call.
    pub retried_entries: usize,
    pub throttled: usize,
}

impl std::ops::AddAssign for PublishStats {
    fn add_assign(&mut self, later: PublishStats) {
        self.calls += later.calls;
        self.published += later.published;
        self.failed += later.failed;
        self.retried_entries += later.retried_entries;
        self.throttled += later.throttled;
    }
}

pub struct Publisher {
    sink: Arc<dyn EventPublisher>,
    max_attempts: u32,
    concurrency: usize,
    base_backoff: Duration,
}

impl Publisher {
    pub fn new(sink: Arc<dyn EventPublisher>) -> Self {
        Publisher { sink, max_attempts: 6, concurrency: 4, base_backoff: Duration::from_millis(100) }
    }

    pub fn with_backoff(mut self, base: Duration, max_attempts: u32) -> Self {
        self.base_backoff = base;
        self.max_attempts = max_attempts;
        self
    }

    /// Publishes every entry; returns the members whose event did not get through.
    pub async fn publish(&self, entries: Vec<(usize, EventEntry)>, deadline: Instant) -> (Vec<usize>, PublishStats) {
        let chunks: Vec<&[(usize, EventEntry)]> = entries.chunks(MAX_ENTRIES_PER_CALL).collect();
        let results: Vec<(Vec<usize>, PublishStats)> = futures::stream::iter(chunks)
            .map(|chunk| self.send(chunk, deadline))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut total = PublishStats::default();
        for (f, stats) in results {
            failed.extend(f);
            total += stats;
        }
        failed.sort_unstable();
        (failed, total)
    }

    async fn send(&self, chunk: &[(usize, EventEntry)], deadline: Instant) -> (Vec<usize>, PublishStats) {
        let mut stats = PublishStats::default();
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut refused: Vec<usize> = Vec::new();
        let mut attempt = 0;
        while !pending.is_empty() && attempt < self.max_attempts {
            if attempt > 0 {
                let pause = backoff(self.base_backoff, attempt);
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
                stats.retried_entries += pending.len();
            }
            attempt += 1;
            let entries: Vec<EventEntry> = pending.iter().map(|&i| chunk[i].1.clone()).collect();
            stats.calls += 1;
            match tokio::time::timeout_at(deadline, self.sink.put_events(&entries)).await {
                Err(_elapsed) => break,
                Ok(Ok(failures)) => {
                    let mut retry = Vec::new();
                    let mut refused_now = 0;
                    for f in failures {
                        let Some(&member) = pending.get(f.index) else { continue };
                        if f.is_transient() {
                            retry.push(member);
                        } else {
                            tracing::warn!(code = %f.code, message = %f.message, "PutEvents refused an enriched-finding event");
                            refused.push(member);
                            refused_now += 1;
                        }
                    }
                    stats.published += pending.len() - retry.len() - refused_now;
                    retry.sort_unstable();
                    pending = retry;
                }
                Ok(Err(PublishError::Throttled { .. })) => stats.throttled += 1,
                Ok(Err(PublishError::Transient { source })) => {
                    tracing::warn!(error = %error_chain(&*source), "PutEvents failed; retrying");
                }
                Ok(Err(PublishError::Rejected { code, source })) => {
                    tracing::error!(code = %code, error = %error_chain(&*source), "PutEvents rejected a request");
                    refused.append(&mut pending);
                }
            }
        }
        // Refused entries fail their records too: a missing bus or a broken permission must show
        // up as retried records and alarms, not as events silently never sent.
        let failed: Vec<usize> = pending.into_iter().chain(refused).map(|i| chunk[i].0).collect();
        stats.failed = failed.len();
        (failed, stats)
    }
}
