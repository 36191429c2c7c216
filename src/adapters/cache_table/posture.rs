//! The posture counts of the sweep's passes as two items of the cache table: the last
//! completed pass (`POSTURE_KEY`) and the refresher's running pass (`POSTURE_PROGRESS_KEY`),
//! each the counts as JSON with their times as numbers. One GetItem or PutItem each; the
//! report reads them without a Security Hub request.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schema::{
    COMPLETED_AT_ATTRIBUTE, COUNTS_ATTRIBUTE, KEY_ATTRIBUTE, PASS_STARTED_ATTRIBUTE, POSTURE_KEY, POSTURE_PROGRESS_KEY,
    key,
};
use crate::core::posture::{CompletedPass, PassProgress};
use crate::ports::metadata::StoreError;
use crate::ports::posture::PostureStore;

pub struct DynamoPostureStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoPostureStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoPostureStore { client, table: table.into() }
    }

    fn error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> StoreError {
        StoreError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }

    async fn get<T: DeserializeOwned>(&self, item_key: &str) -> Result<Option<T>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(item_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?
            .item;
        let Some(counts) = item.as_ref().and_then(|i| i.get(COUNTS_ATTRIBUTE)).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        // An item this version cannot read (written by another version) is no counts, not an
        // error: the next pass writes it again.
        match serde_json::from_str(counts) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(error = %error, item = item_key, "posture counts could not be read; ignored");
                Ok(None)
            }
        }
    }

    async fn put(&self, item_key: &str, value: &impl Serialize, times: [(&str, i64); 2]) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).map_err(|source| StoreError::Encode { source })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, key(item_key))
            .item(COUNTS_ATTRIBUTE, AttributeValue::S(json));
        for (attribute, at) in times {
            put = put.item(attribute, AttributeValue::N(at.to_string()));
        }
        put.send().await.map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }
}

/// When the running pass's counts were last written.
const UPDATED_AT_ATTRIBUTE: &str = "UpdatedAt";

#[async_trait]
impl PostureStore for DynamoPostureStore {
    async fn last_pass(&self) -> Result<Option<CompletedPass>, StoreError> {
        self.get(POSTURE_KEY).await
    }

    async fn progress(&self) -> Result<Option<PassProgress>, StoreError> {
        self.get(POSTURE_PROGRESS_KEY).await
    }

    async fn save_pass(&self, pass: &CompletedPass) -> Result<(), StoreError> {
        let times = [(PASS_STARTED_ATTRIBUTE, pass.started_at), (COMPLETED_AT_ATTRIBUTE, pass.completed_at)];
        self.put(POSTURE_KEY, pass, times).await
    }

    async fn save_progress(&self, progress: Option<&PassProgress>) -> Result<(), StoreError> {
        match progress {
            Some(p) => {
                let times = [(PASS_STARTED_ATTRIBUTE, p.started_at), (UPDATED_AT_ATTRIBUTE, p.updated_at)];
                self.put(POSTURE_PROGRESS_KEY, p, times).await
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key(KEY_ATTRIBUTE, key(POSTURE_PROGRESS_KEY))
                    .send()
                    .await
                    .map_err(|e| self.error("DeleteItem", e))?;
                Ok(())
            }
        }
    }
}
