//! The `account-events` Lambda: forgets the cached metadata of accounts that AWS Organizations
//! or Account Management changed (re-tagged, moved, removed, closed, new security contact), from
//! the CloudTrail events the management account forwards, so that the next finding of such an
//! account is enriched with what is true now rather than after the cache TTL.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::adapters::sdk::load_sdk_config;
use securityhub_enricher::config::AccountEventsConfig;
use securityhub_enricher::core::account_change::Change;
use securityhub_enricher::core::error::error_chain;
use securityhub_enricher::service::account_events::forget_changed;
use securityhub_enricher::telemetry;
use securityhub_enricher::wiring::account_events_tables;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging();
    let config =
        AccountEventsConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let (store, queue) = account_events_tables(&config, &load_sdk_config().await);
    let (store, queue) = (&store, &queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let call = event.payload["detail"]["eventName"].as_str().unwrap_or("unknown").to_owned();
        match forget_changed(store, queue, &event.payload).await {
            Ok(Change::Accounts(accounts)) => {
                tracing::info!(call = %call, accounts = ?accounts, "cached account metadata forgotten; accounts queued for refresh");
                Ok(json!({"forgotten": accounts}))
            }
            Ok(Change::Ignored(reason)) => {
                tracing::info!(call = %call, reason, "event ignored");
                Ok(json!({"ignored": reason}))
            }
            Err(error) => {
                // An error makes Lambda retry the asynchronous invocation.
                tracing::error!(call = %call, error = %error_chain(&error), "could not forget cached metadata");
                Err(lambda_runtime::Error::from(error))
            }
        }
    }))
    .await
}
