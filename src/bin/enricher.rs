//! The `enricher` Lambda: a Kinesis batch in (Pipe array or event source mapping), a
//! partial-batch response out, one EMF flush per invocation.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::event::IncomingBatch;
use securityhub_enricher::core::time::lambda_deadline;
use securityhub_enricher::service::handler::Enricher;
use securityhub_enricher::telemetry;
use securityhub_enricher::wiring::Clients;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging();
    let config = EnricherConfig::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let emf = telemetry::install_emf("enricher")?;
    telemetry::record_cold_start();
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let clients = Clients::for_enricher("enricher", &config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let (enricher, calls) = (&enricher, &calls);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<IncomingBatch>| async move {
        let before = calls.snapshot();
        let report = enricher.handle(event.payload, lambda_deadline(event.context.deadline)).await;
        telemetry::publish(&report, &calls.since(&before));
        if let Err(e) = emf.flush(std::io::stdout().lock()) {
            tracing::warn!(error = %e, "could not write metrics");
        }
        Ok::<_, lambda_runtime::Error>(report.response)
    }))
    .await
}
