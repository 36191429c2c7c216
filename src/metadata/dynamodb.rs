//! The DynamoDB cache tier: one item per account (`AccountId`), the entry as JSON, and the TTL
//! attribute `ExpiresAt`. Reads are batched ≤ 100 keys, writes ≤ 25 items, leftovers retried.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};

use super::cache::{CacheEntry, Freshness, now_epoch_seconds};
use super::{MetadataStore, StoreError};

pub const KEY_ATTRIBUTE: &str = "AccountId";
pub const ENTRY_ATTRIBUTE: &str = "Entry";
pub const TTL_ATTRIBUTE: &str = "ExpiresAt";
const GET_BATCH: usize = 100;
const WRITE_BATCH: usize = 25;
/// Rounds of UnprocessedKeys/UnprocessedItems before giving up on the leftovers.
const LEFTOVER_ROUNDS: u32 = 5;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    fn request_error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> StoreError {
        StoreError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }

    async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(WRITE_BATCH) {
            let mut pending = chunk.to_vec();
            for round in 0..=LEFTOVER_ROUNDS {
                if pending.is_empty() {
                    break;
                }
                if round > 0 {
                    backoff(round).await;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| self.request_error("BatchWriteItem", e))?;
                pending = output.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError::Unprocessed { operation: "BatchWriteItem", count: pending.len() });
            }
        }
        Ok(())
    }
}

/// Waits before resending DynamoDB leftovers: 100 ms, 200 ms, 400 ms, ... with jitter.
async fn backoff(round: u32) {
    tokio::time::sleep(crate::limits::backoff(Duration::from_millis(50), round)).await;
}

fn decode_item(item: &HashMap<String, AttributeValue>, now: i64) -> Option<(String, CacheEntry)> {
    let account_id = item.get(KEY_ATTRIBUTE)?.as_s().ok()?.clone();
    let entry: CacheEntry = serde_json::from_str(item.get(ENTRY_ATTRIBUTE)?.as_s().ok()?).ok()?;
    // TTL deletion lags by up to two days: an expired item is a miss even if it is still there.
    (entry.freshness(now) != Freshness::Expired).then_some((account_id, entry))
}

#[async_trait]
impl MetadataStore for DynamoStore {
    async fn get_many(&self, account_ids: &[String]) -> Result<HashMap<String, CacheEntry>, StoreError> {
        let now = now_epoch_seconds();
        let mut found = HashMap::with_capacity(account_ids.len());
        for chunk in account_ids.chunks(GET_BATCH) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([(KEY_ATTRIBUTE.to_owned(), AttributeValue::S(id.clone()))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(|e| self.request_error("BatchGetItem", e))?,
            );
            let mut round = 0;
            while let Some(request) = pending.take() {
                if round > LEFTOVER_ROUNDS {
                    let count = request.keys().len();
                    return Err(StoreError::Unprocessed { operation: "BatchGetItem", count });
                }
                if round > 0 {
                    backoff(round).await;
                }
                round += 1;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.request_error("BatchGetItem", e))?;
                for item in output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    if let Some((id, entry)) = decode_item(&item, now) {
                        found.insert(id, entry);
                    }
                }
                pending =
                    output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys().is_empty());
            }
        }
        Ok(found)
    }

    async fn put_many(&self, entries: &[(String, CacheEntry)]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(entries.len());
        for (account_id, entry) in entries {
            let json = serde_json::to_string(entry).map_err(|source| StoreError::Encode { source })?;
            let put = PutRequest::builder()
                .item(KEY_ATTRIBUTE, AttributeValue::S(account_id.clone()))
                .item(ENTRY_ATTRIBUTE, AttributeValue::S(json))
                .item(TTL_ATTRIBUTE, AttributeValue::N(entry.expires_at.to_string()))
                .build()
                .map_err(|e| self.request_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.write_all(requests).await
    }

    async fn invalidate(&self, account_ids: &[String]) -> Result<usize, StoreError> {
        let mut requests = Vec::with_capacity(account_ids.len());
        for id in account_ids {
            let delete = DeleteRequest::builder()
                .key(KEY_ATTRIBUTE, AttributeValue::S(id.clone()))
                .build()
                .map_err(|e| self.request_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        self.write_all(requests).await?;
        Ok(account_ids.len())
    }

    async fn invalidate_all(&self) -> Result<usize, StoreError> {
        let mut ids = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#k")
            .expression_attribute_names("#k", KEY_ATTRIBUTE)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.request_error("Scan", e))?;
            for item in page.items.unwrap_or_default() {
                // The table also holds the quota ledger's item (`quota`), which is no account.
                if let Some(AttributeValue::S(id)) = item.get(KEY_ATTRIBUTE)
                    && crate::finding::is_account_id(id)
                {
                    ids.push(id.clone());
                }
            }
        }
        self.invalidate(&ids).await
    }
}
