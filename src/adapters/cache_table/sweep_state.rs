//! The sweep's state as two items of the cache table: the checkpoint of the pass over every
//! active finding, and the queue of accounts to refresh (a string set, so that adding and taking
//! accounts are single atomic UpdateItems that never lose a concurrent change).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::{
    ACCOUNTS_ATTRIBUTE, CHECKPOINT_KEY, KEY_ATTRIBUTE, PASS_STARTED_ATTRIBUTE, REFRESH_QUEUE_KEY, TOKEN_ATTRIBUTE, key,
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
}
