//! The EventBridge adapter: one PutEvents call per batch of at most 10 entries, to the bus named
//! by `ENRICHED_EVENTS_BUS` (a name or an ARN; PutEvents takes either). Retries of failed
//! entries are the `Publisher`'s.

use async_trait::async_trait;
use aws_sdk_eventbridge::error::ProvideErrorMetadata;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::adapters::sdk::{ErrorClass, classify};
use crate::core::enriched_event::EventEntry;
use crate::ports::events::{EventPublisher, FailedEntry, PublishError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    /// The client should have SDK retries off: the `Publisher` retries failed entries, which
    /// the SDK's retry loop never sees (PutEvents answers 200 with FailedEntryCount).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: &str) -> Self {
        EventBridgePublisher { client, bus: bus.to_owned() }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn put_events(&self, entries: &[EventEntry]) -> Result<Vec<FailedEntry>, PublishError> {
        let request_entries = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(e.source)
                    .detail_type(e.detail_type)
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        match self.client.put_events().set_entries(Some(request_entries)).send().await {
            Ok(output) => {
                if output.failed_entry_count == 0 {
                    return Ok(Vec::new());
                }
                // Result entries come back in request order; a failed one has an ErrorCode.
                Ok(output
                    .entries
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .filter(|(_, r)| r.error_code.is_some() || r.event_id.is_none())
                    .map(|(index, r)| FailedEntry {
                        index,
                        code: r.error_code.unwrap_or_default(),
                        message: r.error_message.unwrap_or_default(),
                    })
                    .collect())
            }
            Err(error) => {
                let class = classify(&error, &["ValidationException", "ResourceNotFoundException"]);
                let code = error.code().unwrap_or_default().to_owned();
                let source: BoxError = Box::new(aws_sdk_eventbridge::Error::from(error));
                Err(match class {
                    ErrorClass::Throttled => PublishError::Throttled { source },
                    ErrorClass::Refused => PublishError::Rejected { code, source },
                    ErrorClass::Transient => PublishError::Transient { source },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Failed entries by position, throttling then success through the publisher.

    use std::sync::Arc;
    use std::time::Duration;

    use aws_sdk_eventbridge::Client;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use tokio::time::Instant;

    use super::*;
    use crate::service::publisher::Publisher;

    fn entry(n: usize) -> EventEntry {
        EventEntry { source: "securityhub-enricher", detail_type: "Finding Enriched", detail: format!("{{\"n\":{n}}}") }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_entries_and_throttled_calls_are_retried_until_every_event_lands() {
        let partly = mock!(Client::put_events)
            .sequence()
            .output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(1)
                    .entries(PutEventsResultEntry::builder().event_id("a").build())
                    .entries(
                        PutEventsResultEntry::builder()
                            .error_code("ThrottlingException")
                            .error_message("slow down")
                            .build(),
                    )
                    .build()
            })
            .http_status(400, Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into()))
            .output(|| {
                PutEventsOutput::builder()
                    .failed_entry_count(0)
                    .entries(PutEventsResultEntry::builder().event_id("b").build())
                    .build()
            })
            .build();
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::Sequential, [&partly], |c| c
            .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled()));
        let publisher = Publisher::new(Arc::new(EventBridgePublisher::new(client, "findings")));
        let (failed, stats) =
            publisher.publish(vec![(3, entry(0)), (4, entry(1))], Instant::now() + Duration::from_secs(30)).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!((stats.calls, stats.published, stats.throttled, stats.retried_entries), (3, 2, 1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_bus_fails_the_members_for_retry_and_eleven_entries_take_two_calls() {
        let missing = mock!(Client::put_events).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(r#"{"__type":"ResourceNotFoundException","message":"no bus"}"#),
            )
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&missing]);
        let publisher = Publisher::new(Arc::new(EventBridgePublisher::new(client, "gone")));
        let entries: Vec<(usize, EventEntry)> = (0..11).map(|i| (i, entry(i))).collect();
        let (failed, stats) = publisher.publish(entries, Instant::now() + Duration::from_secs(30)).await;
        assert_eq!(failed, (0..11).collect::<Vec<_>>());
        assert_eq!((stats.calls, stats.failed, stats.published), (2, 11, 0));
        assert_eq!(missing.num_calls(), 2);
    }
}
