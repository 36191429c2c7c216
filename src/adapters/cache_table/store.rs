//! The DynamoDB cache tier: one item per account (`AccountId`), the entry as JSON, and the TTL
//! attribute `ExpiresAt`. Reads are batched ≤ 100 keys, writes ≤ 25 items, leftovers retried.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};

use super::schema::{ENTRY_ATTRIBUTE, KEY_ATTRIBUTE, TTL_ATTRIBUTE, is_account_entry, key};
use crate::core::cache_entry::{CacheEntry, Freshness};
use crate::core::time::now_epoch_seconds;
use crate::limits::backoff as jittered_backoff;
use crate::ports::metadata::{MetadataStore, StoreError};
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
    tokio::time::sleep(jittered_backoff(Duration::from_millis(50), round)).await;
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
            let keys = chunk.iter().map(|id| HashMap::from([(KEY_ATTRIBUTE.to_owned(), key(id))])).collect();
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
                .item(KEY_ATTRIBUTE, key(account_id))
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
                .key(KEY_ATTRIBUTE, key(id))
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
                // The table also holds special items (the quota ledger), which are no account.
                if let Some(AttributeValue::S(id)) = item.get(KEY_ATTRIBUTE)
                    && is_account_entry(id)
                {
                    ids.push(id.clone());
                }
            }
        }
        self.invalidate(&ids).await
    }
}

#[cfg(test)]
mod tests {
    //! What DynamoDB leaves undone: UnprocessedKeys and UnprocessedItems are sent again until
    //! done, and reported once the rounds run out (moto never leaves any, so these run on mocks;
    //! the happy path runs against moto in `tests/local_stack`).

    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::core::account::{AccountMetadata, AccountRecord};

    const TABLE: &str = "cache";

    fn entry(id: &str) -> CacheEntry {
        CacheEntry {
            record: AccountRecord::Found(AccountMetadata::from_finding_name(id, Some("n"))),
            fetched_at: 0,
            fresh_until: i64::MAX,
            expires_at: i64::MAX,
        }
    }

    fn item(id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (KEY_ATTRIBUTE.to_owned(), key(id)),
            (ENTRY_ATTRIBUTE.to_owned(), AttributeValue::S(serde_json::to_string(&entry(id)).unwrap())),
        ])
    }

    fn keys_of(ids: &[&str]) -> KeysAndAttributes {
        let keys = ids.iter().map(|id| HashMap::from([(KEY_ATTRIBUTE.to_owned(), key(id))])).collect();
        KeysAndAttributes::builder().set_keys(Some(keys)).build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn unprocessed_keys_are_asked_for_again_until_every_entry_is_read() {
        let rule = mock!(aws_sdk_dynamodb::Client::batch_get_item)
            .sequence()
            .output(|| {
                BatchGetItemOutput::builder()
                    .responses(TABLE, vec![item("111111111111")])
                    .unprocessed_keys(TABLE, keys_of(&["222222222222"]))
                    .build()
            })
            .output(|| BatchGetItemOutput::builder().responses(TABLE, vec![item("222222222222")]).build())
            .build();
        let store = DynamoStore::new(mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]), TABLE);
        let ids = ["111111111111".to_owned(), "222222222222".to_owned()];
        let found = store.get_many(&ids).await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn items_left_unprocessed_after_every_round_are_reported() {
        let left = || {
            let put = PutRequest::builder().set_item(Some(item("111111111111"))).build().unwrap();
            BatchWriteItemOutput::builder()
                .unprocessed_items(TABLE, vec![WriteRequest::builder().put_request(put).build()])
                .build()
        };
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item).sequence().output(left).repeatedly().build();
        let store = DynamoStore::new(mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule]), TABLE);
        let error = store.put_many(&[("111111111111".to_owned(), entry("111111111111"))]).await.unwrap_err();
        assert!(matches!(error, StoreError::Unprocessed { operation: "BatchWriteItem", count: 1 }), "{error:?}");
        assert_eq!(rule.num_calls() as u32, LEFTOVER_ROUNDS + 1);
    }
}
