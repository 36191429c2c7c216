//! The `refresher` Lambda, on a schedule: accounts queued for refresh first, then the pass over
//! every active finding from its checkpoint in the cache table, within the invocation's
//! deadline, and beside them the drain of the pending-writes store. It shares
//! BatchUpdateFindings' quota with the enricher environments as background work: it yields to
//! the stream, and takes the whole quota when the stream is idle.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::time::lambda_deadline;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::telemetry;
use securityhub_enricher::wiring::Clients;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging();
    // The enricher's own configuration: the same table, rates and rendering.
    let config = EnricherConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let emf = telemetry::install_emf("refresher")?;
    telemetry::record_cold_start();
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let clients = Clients::for_enricher("refresher", &config, &sdk, &calls).await;
    let refresher = Refresher::from_clients(&config, &clients);
    let (refresher, calls) = (&refresher, &calls);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let before = calls.snapshot();
        let deadline = lambda_deadline(event.context.deadline)
            .checked_sub(config.deadline_margin)
            .unwrap_or_else(tokio::time::Instant::now);
        // The run drains the pending-writes store beside its sweeps (`Refresher::run`).
        let report = refresher.run(deadline, &|_| {}).await;
        telemetry::publish(&report, &calls.since(&before));
        if let Err(e) = emf.flush(std::io::stdout().lock()) {
            tracing::warn!(error = %e, "could not write metrics");
        }
        // A completed pass's posture counts: once, as their own EMF documents.
        if let Some(pass) = &report.posture {
            let now_ms = securityhub_enricher::core::time::since_epoch().as_millis() as u64;
            for document in telemetry::posture_documents(pass, "refresher", now_ms) {
                println!("{document}");
            }
        }
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(&report.sweep)?)
    }))
    .await
}
