//! An enriched-events bus on the local stack and a tap on it: moto's EventBridge (5.2.5) keeps
//! no log of PutEvents but delivers matching events to an SQS target, so a rule with the
//! pattern under test, targeting a queue, shows exactly the events that pattern routes.

use serde_json::Value;

use super::LocalError;

/// A bus, one rule (the pattern being tested) and the queue it delivers to.
pub struct EventTap {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl EventTap {
    /// Creates the bus (if new), a queue and a rule with `pattern` from the bus to the queue.
    pub async fn create(
        sdk: &aws_config::SdkConfig,
        bus: &str,
        rule: &str,
        pattern: &Value,
    ) -> Result<Self, LocalError> {
        let events = aws_sdk_eventbridge::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        if events.describe_event_bus().name(bus).send().await.is_err() {
            events
                .create_event_bus()
                .name(bus)
                .send()
                .await
                .map_err(|e| LocalError::new("CreateEventBus", aws_sdk_eventbridge::Error::from(e)))?;
        }
        let queue_url = sqs
            .create_queue()
            .queue_name(rule)
            .send()
            .await
            .map_err(|e| LocalError::new("CreateQueue", aws_sdk_sqs::Error::from(e)))?
            .queue_url
            .unwrap_or_default();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| LocalError::new("GetQueueAttributes", aws_sdk_sqs::Error::from(e)))?
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        events
            .put_rule()
            .name(rule)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .map_err(|e| LocalError::new("PutRule", aws_sdk_eventbridge::Error::from(e)))?;
        events
            .put_targets()
            .rule(rule)
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder().id("tap").arn(queue_arn).build().expect("id and arn"),
            )
            .send()
            .await
            .map_err(|e| LocalError::new("PutTargets", aws_sdk_eventbridge::Error::from(e)))?;
        Ok(EventTap { sqs, queue_url })
    }

    /// Every event the rule delivered so far (drains the queue).
    pub async fn received(&self) -> Result<Vec<Value>, LocalError> {
        let mut events = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| LocalError::new("ReceiveMessage", aws_sdk_sqs::Error::from(e)))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(events);
            }
            for m in messages {
                let body = m.body.unwrap_or_default();
                events.push(serde_json::from_str(&body).map_err(|e| LocalError::new("event body", e))?);
                if let Some(handle) = m.receipt_handle {
                    let _ = self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await;
                }
            }
        }
    }
}
