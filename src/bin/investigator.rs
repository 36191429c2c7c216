//! The `investigator` Lambda: one pass over the investigation jobs per invocation, whether the
//! schedule (every minute) or the jobs table's stream invoked it. It never waits on Detective.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::InvestigatorConfig;
use securityhub_enricher::core::time::lambda_deadline;
use securityhub_enricher::service::investigator::Investigator;
use securityhub_enricher::telemetry;
use securityhub_enricher::wiring::Clients;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging();
    let config =
        InvestigatorConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let emf = telemetry::install_emf("investigator")?;
    telemetry::record_cold_start();
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let clients = Clients::for_investigator(&sdk, &calls).await;
    let investigator = Investigator::from_clients(&config, &clients, &region);
    let (investigator, calls) = (&investigator, &calls);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let before = calls.snapshot();
        let report = investigator.run_pass(lambda_deadline(event.context.deadline)).await;
        telemetry::publish(&report, &calls.since(&before));
        if let Err(e) = emf.flush(std::io::stdout().lock()) {
            tracing::warn!(error = %e, "could not write metrics");
        }
        // A stream invocation expects a batch response; the pass itself is the retry.
        Ok::<_, lambda_runtime::Error>(json!({ "batchItemFailures": [], "pass": report }))
    }))
    .await
}
