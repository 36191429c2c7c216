//! The `enricher` Lambda: a Kinesis batch in (Pipe array or event source mapping), a
//! partial-batch response out.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::aws::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::event::IncomingBatch;
use securityhub_enricher::handler::Enricher;
use securityhub_enricher::wiring::Clients;
use securityhub_enricher::{lambda_deadline, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_logging();
    let config = EnricherConfig::from_env().map_err(|e| {
        tracing::error!(error = %e, "invalid configuration");
        e
    })?;
    let calls = ApiCalls::default();
    let sdk = load_sdk_config().await;
    let clients = Clients::new(&config, &sdk, &calls).await;
    let enricher = Enricher::from_clients(&config, &clients);
    let enricher = &enricher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<IncomingBatch>| async move {
        let deadline = lambda_deadline(event.context.deadline);
        let report = enricher.handle(event.payload, deadline).await;
        Ok::<_, lambda_runtime::Error>(report.response)
    }))
    .await
}
