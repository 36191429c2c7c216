//! The pending-writes store as items of the cache table: one item per account holding its
//! waiting findings (one attribute each, so holding more is one UpdateItem that never loses a
//! concurrent hold), a sharded index of the accounts with findings waiting, and a drainer's
//! claim on an account (a conditional UpdateItem, so that two drainers never write the same
//! findings at once). Keys and attributes: `schema`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};

use super::capacity::{UsageCounter, item_bytes};
use super::schema::{
    DRAIN_UNTIL_ATTRIBUTE, KEY_ATTRIBUTE, PENDING_COUNT_PREFIX, PENDING_FINDING_PREFIX, PENDING_INDEX_PREFIX,
    PENDING_INDEX_SHARDS, PENDING_OLDEST_PREFIX, PENDING_PREFIX, TTL_ATTRIBUTE, key, pending_index_key,
};
use crate::core::pending::{PendingAccount, PendingFinding};
use crate::ports::metadata::StoreError;
use crate::ports::pending::{PendingWrites, StoreUsage, Taken};

/// A waiting finding's item lingers this long after its last hold, then TTL removes it: far
/// beyond any delay, so only an account whose index entry was lost (a drainer that died between
/// taking and releasing it, and no later hold) is left to the sweep.
const ITEM_LIFETIME_SECONDS: i64 = 86_400;
/// Findings per UpdateItem of a hold, and accounts per UpdateItem of an index shard: both keep
/// the expression well under DynamoDB's 4 KB.
const FINDINGS_PER_UPDATE: usize = 100;
const ACCOUNTS_PER_INDEX_UPDATE: usize = 60;
/// Accounts held or taken at once.
const CONCURRENCY: usize = 16;

pub struct DynamoPendingWrites {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Requests and capacity units, from the items each request returns (every write asks for
    /// the item as it was at its largest: after a hold or a claim, before a removal).
    usage: UsageCounter,
}

impl DynamoPendingWrites {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoPendingWrites { client, table: table.into(), usage: UsageCounter::default() }
    }

    fn error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> StoreError {
        StoreError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }

    /// Writes one account's findings into its item; answers what the item holds now.
    async fn hold_account(
        &self,
        account: &str,
        findings: &[PendingFinding],
        now_ms: i64,
    ) -> Result<PendingAccount, StoreError> {
        let mut waiting = PendingAccount { account: account.to_owned(), findings: 0, oldest_ms: now_ms };
        for chunk in findings.chunks(FINDINGS_PER_UPDATE) {
            let mut expression = "SET #ttl = :ttl".to_owned();
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, key(&format!("{PENDING_PREFIX}{account}")))
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(
                    ":ttl",
                    AttributeValue::N((now_ms / 1000 + ITEM_LIFETIME_SECONDS).to_string()),
                )
                .return_values(ReturnValue::AllNew);
            for (i, finding) in chunk.iter().enumerate() {
                expression.push_str(&format!(", #f{i} = :f{i}"));
                let json = serde_json::to_string(finding).map_err(|source| StoreError::Encode { source })?;
                request = request
                    .expression_attribute_names(format!("#f{i}"), format!("{PENDING_FINDING_PREFIX}{}", finding.key()))
                    .expression_attribute_values(format!(":f{i}"), AttributeValue::S(json));
            }
            let output = request.update_expression(expression).send().await.map_err(|e| self.error("UpdateItem", e))?;
            let item = output.attributes.unwrap_or_default();
            self.usage.wrote(item_bytes(&item));
            waiting = summary(account, &findings_of(&item), now_ms);
        }
        Ok(waiting)
    }

    /// Sets the index entries of these accounts (all in one shard): a hold keeps the oldest
    /// time already there, a release (`exact`) sets what is left.
    async fn index(&self, shard: &str, accounts: &[PendingAccount], exact: bool) -> Result<(), StoreError> {
        for chunk in accounts.chunks(ACCOUNTS_PER_INDEX_UPDATE) {
            let mut sets = Vec::with_capacity(chunk.len() * 2);
            let mut request = self.client.update_item().table_name(&self.table).key(KEY_ATTRIBUTE, key(shard));
            for (i, account) in chunk.iter().enumerate() {
                sets.push(if exact {
                    format!("#n{i} = :n{i}, #o{i} = :o{i}")
                } else {
                    format!("#n{i} = :n{i}, #o{i} = if_not_exists(#o{i}, :o{i})")
                });
                request = request
                    .expression_attribute_names(format!("#n{i}"), format!("{PENDING_COUNT_PREFIX}{}", account.account))
                    .expression_attribute_names(format!("#o{i}"), format!("{PENDING_OLDEST_PREFIX}{}", account.account))
                    .expression_attribute_values(format!(":n{i}"), AttributeValue::N(account.findings.to_string()))
                    .expression_attribute_values(format!(":o{i}"), AttributeValue::N(account.oldest_ms.to_string()));
            }
            // Entries are set, never removed, here: the item is at its largest after.
            let output = request
                .update_expression(format!("SET {}", sets.join(", ")))
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map_err(|e| self.error("UpdateItem", e))?;
            self.usage.wrote(item_bytes(&output.attributes.unwrap_or_default()));
        }
        Ok(())
    }

    async fn unindex(&self, account: &str) -> Result<(), StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(&pending_index_key(account)))
            .update_expression("REMOVE #n, #o")
            .expression_attribute_names("#n", format!("{PENDING_COUNT_PREFIX}{account}"))
            .expression_attribute_names("#o", format!("{PENDING_OLDEST_PREFIX}{account}"))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", e))?;
        self.usage.wrote(item_bytes(&output.attributes.unwrap_or_default()));
        Ok(())
    }
}

/// The findings an account's item holds (attributes that do not decode are skipped: a snapshot
/// of a later version this one cannot read is left for it, and TTL).
fn findings_of(item: &HashMap<String, AttributeValue>) -> Vec<PendingFinding> {
    item.iter()
        .filter(|(name, _)| name.starts_with(PENDING_FINDING_PREFIX))
        .filter_map(|(_, value)| serde_json::from_str(value.as_s().ok()?).ok())
        .collect()
}

fn summary(account: &str, findings: &[PendingFinding], now_ms: i64) -> PendingAccount {
    PendingAccount {
        account: account.to_owned(),
        findings: findings.len(),
        oldest_ms: findings.iter().map(|f| f.held_at_ms).min().unwrap_or(now_ms),
    }
}

#[async_trait]
impl PendingWrites for DynamoPendingWrites {
    async fn hold(
        &self,
        groups: &[(String, Vec<PendingFinding>)],
        now_ms: i64,
    ) -> Vec<(String, Result<PendingAccount, StoreError>)> {
        // Each account's findings first, then its index entry: an account indexed is never
        // one whose findings are not stored.
        let mut held: Vec<(String, Result<PendingAccount, StoreError>)> = Vec::with_capacity(groups.len());
        for chunk in groups.chunks(CONCURRENCY) {
            let answers = futures::future::join_all(
                chunk.iter().map(|(account, findings)| self.hold_account(account, findings, now_ms)),
            )
            .await;
            held.extend(chunk.iter().map(|(account, _)| account.clone()).zip(answers));
        }
        let mut shards: BTreeMap<String, Vec<PendingAccount>> = BTreeMap::new();
        for waiting in held.iter().filter_map(|(_, r)| r.as_ref().ok()) {
            shards.entry(pending_index_key(&waiting.account)).or_default().push(waiting.clone());
        }
        let failures =
            futures::future::join_all(shards.iter().map(|(shard, accounts)| self.index(shard, accounts, false))).await;
        let mut indexed: HashMap<String, Option<String>> = HashMap::new();
        for ((_, accounts), failure) in shards.iter().zip(failures) {
            let failure = failure.err().map(|e| e.to_string());
            for account in accounts {
                indexed.insert(account.account.clone(), failure.clone());
            }
        }
        // Stored but not indexed: no drainer would find them, so the caller writes them now
        // (what stays in the item is written again by a later drain, which changes nothing).
        held.into_iter()
            .map(|(account, result)| {
                let result = match (result, indexed.get(&account)) {
                    (Ok(_), Some(Some(reason))) => {
                        Err(StoreError::Unavailable { reason: format!("pending index not updated: {reason}") })
                    }
                    (result, _) => result,
                };
                (account, result)
            })
            .collect()
    }

    async fn accounts(&self) -> Result<Vec<PendingAccount>, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for shard in 0..PENDING_INDEX_SHARDS {
            keys =
                keys.keys(HashMap::from([(KEY_ATTRIBUTE.to_owned(), key(&format!("{PENDING_INDEX_PREFIX}{shard}")))]));
        }
        let mut request = HashMap::from([(self.table.clone(), keys.build().expect("keys are set"))]);
        let mut accounts: BTreeMap<String, PendingAccount> = BTreeMap::new();
        // BatchGetItem may leave keys unprocessed (throughput, 16 MB): ask again for those.
        for _ in 0..5 {
            let asked = request.get(&self.table).map_or(0, |k| k.keys().len());
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| self.error("BatchGetItem", e))?;
            let items = output.responses.unwrap_or_default().remove(&self.table).unwrap_or_default();
            let unprocessed =
                output.unprocessed_keys.as_ref().and_then(|u| u.get(&self.table)).map_or(0, |k| k.keys().len());
            // A key read and not found still costs a read unit (its size counts as 0).
            let missing = asked.saturating_sub(items.len() + unprocessed);
            self.usage.read(items.iter().map(item_bytes).chain(std::iter::repeat_n(0, missing)));
            for item in items {
                for (name, value) in &item {
                    let number = value.as_n().ok().and_then(|n| n.parse::<i64>().ok()).unwrap_or_default();
                    let (account, count) = if let Some(account) = name.strip_prefix(PENDING_COUNT_PREFIX) {
                        (account, true)
                    } else if let Some(account) = name.strip_prefix(PENDING_OLDEST_PREFIX) {
                        (account, false)
                    } else {
                        continue;
                    };
                    let entry = accounts.entry(account.to_owned()).or_insert_with(|| PendingAccount {
                        account: account.to_owned(),
                        findings: 0,
                        oldest_ms: i64::MAX,
                    });
                    if count {
                        entry.findings = usize::try_from(number).unwrap_or_default();
                    } else {
                        entry.oldest_ms = number;
                    }
                }
            }
            match output.unprocessed_keys.filter(|u| !u.is_empty()) {
                Some(unprocessed) => request = unprocessed,
                None => return Ok(accounts.into_values().collect()),
            }
        }
        Err(StoreError::Unprocessed { operation: "BatchGetItem", count: 1 })
    }

    async fn take(&self, account: &str, now_ms: i64, until_ms: i64) -> Result<Option<Taken>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(&format!("{PENDING_PREFIX}{account}")))
            .update_expression("SET #claim = :until")
            .condition_expression("attribute_exists(#key) AND (attribute_not_exists(#claim) OR #claim < :now)")
            .expression_attribute_names("#key", KEY_ATTRIBUTE)
            .expression_attribute_names("#claim", DRAIN_UNTIL_ATTRIBUTE)
            .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(output) => output.attributes.unwrap_or_default(),
            // Another drainer's (or nothing there: a stale index entry, taken off below). A
            // failed condition still costs a write unit (at least; the item's size is unknown).
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                self.usage.wrote(0);
                return Ok(None);
            }
            Err(e) => return Err(self.error("UpdateItem", e)),
        };
        self.usage.wrote(item_bytes(&item));
        // The index entry stays until `release`: should this drainer die, another finds the
        // account there once the claim lapses.
        Ok(Some(Taken { findings: findings_of(&item) }))
    }

    async fn release(&self, account: &str, written: &[String]) -> Result<(), StoreError> {
        let mut left = Vec::new();
        let chunks: Vec<&[String]> =
            if written.is_empty() { vec![&[]] } else { written.chunks(FINDINGS_PER_UPDATE).collect() };
        for chunk in chunks {
            let mut removes = vec!["#claim".to_owned()];
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, key(&format!("{PENDING_PREFIX}{account}")))
                .expression_attribute_names("#claim", DRAIN_UNTIL_ATTRIBUTE)
                // The item before: the larger (what the write costs), and what is left is it
                // less what this request removes.
                .return_values(ReturnValue::AllOld);
            for (i, finding_key) in chunk.iter().enumerate() {
                removes.push(format!("#f{i}"));
                request = request
                    .expression_attribute_names(format!("#f{i}"), format!("{PENDING_FINDING_PREFIX}{finding_key}"));
            }
            let output = request
                .update_expression(format!("REMOVE {}", removes.join(", ")))
                .send()
                .await
                .map_err(|e| self.error("UpdateItem", e))?;
            let before = output.attributes.unwrap_or_default();
            self.usage.wrote(item_bytes(&before));
            let removed: std::collections::HashSet<&String> = chunk.iter().collect();
            left = findings_of(&before).into_iter().filter(|f| !removed.contains(&f.key())).collect();
        }
        if left.is_empty() {
            // Off the index, then a look at the item again: a hold that landed in between is
            // indexed again here, and one that lands later indexes itself after this.
            self.unindex(account).await?;
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, key(&format!("{PENDING_PREFIX}{account}")))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("GetItem", e))?
                .item
                .unwrap_or_default();
            self.usage.read([item_bytes(&item)]);
            left = findings_of(&item);
        }
        if !left.is_empty() {
            let waiting = summary(account, &left, i64::MAX);
            self.index(&pending_index_key(account), &[waiting], true).await?;
        }
        Ok(())
    }

    fn usage(&self) -> Option<StoreUsage> {
        Some(self.usage.snapshot())
    }
}
