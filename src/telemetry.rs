//! Logging setup: structured JSON through `tracing`, level from `AWS_LAMBDA_LOG_LEVEL` or
//! `RUST_LOG` (default INFO).

use tracing_subscriber::EnvFilter;

pub fn init_logging() {
    let level =
        std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}
