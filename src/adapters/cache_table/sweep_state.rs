//! The sweep's state as items of the cache table: the checkpoint of the pass over every active
//! finding, when the last pass finished, the queue of accounts to refresh (a string set, so that
//! adding and taking accounts are single atomic UpdateItems that never lose a concurrent change),
//! and the run lease (a conditional PutItem, so that two runs never hold it at once).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{
    ACCOUNTS_ATTRIBUTE, CHECKPOINT_KEY, COMPLETED_AT_ATTRIBUTE, HOLDER_ATTRIBUTE, KEY_ATTRIBUTE, LAST_PASS_KEY,
    LEASE_KEY, LEASED_UNTIL_ATTRIBUTE, PASS_STARTED_ATTRIBUTE, REFRESH_QUEUE_KEY, TOKEN_ATTRIBUTE, TTL_ATTRIBUTE, key,
};
use crate::ports::metadata::StoreError;
use crate::ports::sweep_state::{Checkpoint, SweepState};

pub struct DynamoSweepState {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSweepState {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoSweepState { client, table: table.into() }
    }

    fn error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> StoreError {
        StoreError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }

    /// ADD or DELETE accounts in the queue's set (DynamoDB rejects an empty set, so no call).
    async fn change_queue(&self, verb: &str, accounts: &[String]) -> Result<(), StoreError> {
        if accounts.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(REFRESH_QUEUE_KEY))
            .update_expression(format!("{verb} #accounts :accounts"))
            .expression_attribute_names("#accounts", ACCOUNTS_ATTRIBUTE)
            .expression_attribute_values(":accounts", AttributeValue::Ss(accounts.to_vec()))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl SweepState for DynamoSweepState {
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(CHECKPOINT_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?
            .item;
        Ok(item.and_then(|item| {
            let next_token = item.get(TOKEN_ATTRIBUTE)?.as_s().ok()?.clone();
            let pass_started_at = item.get(PASS_STARTED_ATTRIBUTE)?.as_n().ok()?.parse().ok()?;
            Some(Checkpoint { next_token, pass_started_at })
        }))
    }

    async fn save_checkpoint(&self, checkpoint: Option<&Checkpoint>) -> Result<(), StoreError> {
        match checkpoint {
            Some(c) => {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item(KEY_ATTRIBUTE, key(CHECKPOINT_KEY))
                    .item(TOKEN_ATTRIBUTE, AttributeValue::S(c.next_token.clone()))
                    .item(PASS_STARTED_ATTRIBUTE, AttributeValue::N(c.pass_started_at.to_string()))
                    .send()
                    .await
                    .map_err(|e| self.error("PutItem", e))?;
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key(KEY_ATTRIBUTE, key(CHECKPOINT_KEY))
                    .send()
                    .await
                    .map_err(|e| self.error("DeleteItem", e))?;
            }
        }
        Ok(())
    }

    async fn queued(&self) -> Result<Vec<String>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(REFRESH_QUEUE_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?
            .item;
        let mut accounts: Vec<String> = item
            .and_then(|mut item| item.remove(ACCOUNTS_ATTRIBUTE))
            .and_then(|set| set.as_ss().ok().cloned())
            .unwrap_or_default();
        accounts.sort();
        Ok(accounts)
    }

    async fn enqueue(&self, accounts: &[String]) -> Result<(), StoreError> {
        self.change_queue("ADD", accounts).await
    }

    async fn dequeue(&self, accounts: &[String]) -> Result<(), StoreError> {
        self.change_queue("DELETE", accounts).await
    }

    async fn last_pass_completed(&self) -> Result<Option<i64>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(LAST_PASS_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?
            .item;
        Ok(item.and_then(|item| item.get(COMPLETED_AT_ATTRIBUTE)?.as_n().ok()?.parse().ok()))
    }

    async fn record_pass_completed(&self, at: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, key(LAST_PASS_KEY))
            .item(COMPLETED_AT_ATTRIBUTE, AttributeValue::N(at.to_string()))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }

    async fn take_lease(&self, holder: &str, now: i64, until: i64) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, key(LEASE_KEY))
            .item(HOLDER_ATTRIBUTE, AttributeValue::S(holder.to_owned()))
            .item(LEASED_UNTIL_ATTRIBUTE, AttributeValue::N(until.to_string()))
            // TTL cleans up a lease whose holder died; expiry is checked here, not left to TTL.
            .item(TTL_ATTRIBUTE, AttributeValue::N((until + 3600).to_string()))
            .condition_expression("attribute_not_exists(#key) OR #until < :now OR #holder = :holder")
            .expression_attribute_names("#key", KEY_ATTRIBUTE)
            .expression_attribute_names("#until", LEASED_UNTIL_ATTRIBUTE)
            .expression_attribute_names("#holder", HOLDER_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(LEASE_KEY))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", HOLDER_ATTRIBUTE)
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's by now (ours had expired): not ours to give back.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(self.error("DeleteItem", e)),
        }
    }
}
