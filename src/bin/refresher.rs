//! The `refresher` Lambda, on a schedule: accounts queued for refresh first, then the pass over
//! every active finding from its checkpoint in the cache table, within the invocation's
//! deadline. It shares BatchUpdateFindings' quota with the enricher environments as background
//! work: it yields to the stream, and takes the whole quota when the stream is idle.

use lambda_runtime::{LambdaEvent, service_fn};
use securityhub_enricher::adapters::sdk::{ApiCalls, load_sdk_config};
use securityhub_enricher::config::EnricherConfig;
use securityhub_enricher::core::time::lambda_deadline;
use securityhub_enricher::service::pending;
use securityhub_enricher::service::refresh::Refresher;
use securityhub_enricher::telemetry;
use securityhub_enricher::wiring::{Clients, coalescer};
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
    // The pending-writes store's drainer of last resort (see `service::pending`).
    let drainer = coalescer(&config, &clients);
    let (refresher, calls, drainer) = (&refresher, &calls, &drainer);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let before = calls.snapshot();
        let deadline = lambda_deadline(event.context.deadline)
            .checked_sub(config.deadline_margin)
            .unwrap_or_else(tokio::time::Instant::now);
        // Beside the run, until the next one is due: the findings waiting in the pending-writes
        // store, through the sweep's pipeline (background work on the quota).
        let drain_until = deadline.min(tokio::time::Instant::now() + pending::DRAIN_PER_RUN);
        let drain = async {
            if let Some(drainer) = drainer {
                let sweeper = &refresher.sweeper;
                let (drained, _) =
                    drainer.drain_while_waiting(&sweeper.directory, &sweeper.pipeline, drain_until).await;
                if drained.accounts > 0 {
                    tracing::info!(
                        accounts = drained.accounts,
                        written = drained.written,
                        failed = drained.failed,
                        "pending writes drained"
                    );
                }
            }
        };
        let (report, ()) = tokio::join!(refresher.run(deadline, &|_| {}), drain);
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
