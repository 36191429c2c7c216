//! The quota ledger (see `service::quota_share`) as one item of the cache table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::schema::{HOLDER_PREFIX, KEY_ATTRIBUTE, LEDGER_KEY, TTL_ATTRIBUTE, key};
use crate::core::rate::{BACKGROUND_PREFIX, Holders};
use crate::core::time::since_epoch;
use crate::ports::ledger::{LedgerError, QuotaLedger};

/// Claims expired this long ago are pruned; a younger one may belong to a holder whose
/// renewal races the prune.
pub const PRUNE_AFTER: Duration = Duration::from_secs(60);
/// Expression attribute names are limited; prune a few per claim.
const PRUNE_PER_CLAIM: usize = 16;
/// The item lingers this long after the last claim, then DynamoDB's TTL removes it.
const ITEM_LIFETIME: Duration = Duration::from_secs(86_400);

/// The ledger as one item of the cache table, updated with one UpdateItem per claim that also
/// returns every claim (ReturnValues ALL_NEW).
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Long-expired claims seen in the last answer, pruned with the next claim.
    prunable: Mutex<Vec<String>>,
    prune_after: Duration,
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoLedger { client, table: table.into(), prunable: Mutex::default(), prune_after: PRUNE_AFTER }
    }

    /// Prunes claims this long after they lapse instead of `PRUNE_AFTER`.
    pub fn with_prune_after(mut self, prune_after: Duration) -> Self {
        self.prune_after = prune_after;
        self
    }

    fn error(&self, operation: &'static str, source: impl Into<aws_sdk_dynamodb::Error>) -> LedgerError {
        LedgerError::Request { operation, table: self.table.clone(), source: Box::new(source.into()) }
    }
}

#[async_trait]
impl QuotaLedger for DynamoLedger {
    async fn claim(&self, holder: &str, ttl: Duration) -> Result<Holders, LedgerError> {
        let now = since_epoch().as_millis() as u64;
        let mine = format!("{HOLDER_PREFIX}{holder}");
        let prune: Vec<String> = {
            let mut prunable = self.prunable.lock().expect("ledger lock");
            prunable.retain(|name| *name != mine);
            let keep = prunable.len().saturating_sub(PRUNE_PER_CLAIM);
            prunable.split_off(keep)
        };
        let mut expression = "SET #me = :until, #ttl = :item_expires".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(LEDGER_KEY))
            .expression_attribute_names("#me", &mine)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":until", AttributeValue::N((now + ttl.as_millis() as u64).to_string()))
            .expression_attribute_values(
                ":item_expires",
                AttributeValue::N((now / 1000 + ITEM_LIFETIME.as_secs()).to_string()),
            )
            .return_values(ReturnValue::AllNew);
        for (i, name) in prune.iter().enumerate() {
            expression.push_str(if i == 0 { " REMOVE " } else { ", " });
            expression.push_str(&format!("#p{i}"));
            request = request.expression_attribute_names(format!("#p{i}"), name);
        }
        let output = request.update_expression(expression).send().await.map_err(|e| self.error("UpdateItem", e))?;
        let claims = live_claims(output.attributes.unwrap_or_default(), now, self.prune_after);
        *self.prunable.lock().expect("ledger lock") = claims.prunable;
        // Our own claim was just written; count it even if the item came back without it.
        Ok(if claims.live.total() == 0 { Holders::of(holder) } else { claims.live })
    }

    async fn release(&self, holder: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, key(LEDGER_KEY))
            .update_expression("REMOVE #me")
            .expression_attribute_names("#me", format!("{HOLDER_PREFIX}{holder}"))
            .send()
            .await
            .map_err(|e| self.error("UpdateItem", e))?;
        Ok(())
    }
}

struct Claims {
    live: Holders,
    prunable: Vec<String>,
}

fn live_claims(item: HashMap<String, AttributeValue>, now_millis: u64, prune_after: Duration) -> Claims {
    let mut claims = Claims { live: Holders::default(), prunable: Vec::new() };
    for (name, value) in item {
        if !name.starts_with(HOLDER_PREFIX) {
            continue;
        }
        let until = match &value {
            AttributeValue::N(n) => n.parse::<u64>().unwrap_or_default(),
            _ => 0,
        };
        if until > now_millis {
            if name[HOLDER_PREFIX.len()..].starts_with(BACKGROUND_PREFIX) {
                claims.live.background += 1;
            } else {
                claims.live.foreground += 1;
            }
        } else if until + prune_after.as_millis() as u64 <= now_millis {
            claims.prunable.push(name);
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_claims_are_not_counted_and_long_expired_ones_are_pruned() {
        let now = 1_000_000;
        let item = HashMap::from([
            (KEY_ATTRIBUTE.to_owned(), key(LEDGER_KEY)),
            (TTL_ATTRIBUTE.to_owned(), AttributeValue::N("99999999999".into())),
            ("h_live".to_owned(), AttributeValue::N((now + 500).to_string())),
            ("h_bg-sweep".to_owned(), AttributeValue::N((now + 500).to_string())),
            ("h_just_lapsed".to_owned(), AttributeValue::N((now - 500).to_string())),
            ("h_dead".to_owned(), AttributeValue::N((now - 61_000).to_string())),
            ("h_garbled".to_owned(), AttributeValue::S("x".into())),
        ]);
        let claims = live_claims(item, now, PRUNE_AFTER);
        assert_eq!(claims.live, Holders { foreground: 1, background: 1 });
        let mut prunable = claims.prunable;
        prunable.sort();
        assert_eq!(prunable, ["h_dead", "h_garbled"]);
    }
}
