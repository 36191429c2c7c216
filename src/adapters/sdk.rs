//! Shared plumbing for the AWS SDK clients: loading their configuration, naming the function
//! that calls, classifying errors (the one throttling classifier), and counting every call,
//! attempt and throttle by service and operation (for metrics, logs and tests).

use std::sync::{Arc, Mutex};

use aws_config::AppName;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::telemetry::{CallCount, CallCounts};

/// Loads the SDK configuration the standard way: region, credentials and endpoint from the
/// environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, ...).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The SDK app name of a function (`app/<name>` in every request's User-Agent): CloudTrail shows
/// which function made a call, and the local stack's permission test checks each function's
/// calls against its own role.
pub fn app_name(function: &'static str) -> AppName {
    AppName::new(function).expect("function names are valid app names")
}

/// How a failed AWS call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Slow down and try again; says nothing about the request.
    Throttled,
    /// Worth another try (5xx, network, unknown codes).
    Transient,
    /// The request cannot succeed as it is.
    Refused,
}

/// True for the error codes AWS uses for throttling.
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// The one classifier of AWS errors: throttling by code, then the codes the caller knows to be
/// final for its operation, else transient (so a broken permission shows up as retried
/// records rather than as silently dropped data, unless the caller lists it as final).
pub fn classify(error: &impl ProvideErrorMetadata, refused: &[&str]) -> ErrorClass {
    match error.code() {
        Some(code) if is_throttling_code(code) => ErrorClass::Throttled,
        Some(code) if refused.contains(&code) => ErrorClass::Refused,
        _ => ErrorClass::Transient,
    }
}

/// Operation counts keyed by (service, operation), shared by every client it is attached to.
#[derive(Debug, Clone, Default)]
pub struct ApiCalls(Arc<Mutex<CallCounts>>);

impl ApiCalls {
    pub fn snapshot(&self) -> CallCounts {
        self.0.lock().expect("call counter lock").clone()
    }

    /// Calls made since `before`, for per-invocation figures.
    pub fn since(&self, before: &CallCounts) -> CallCounts {
        let mut delta = self.snapshot();
        for (key, count) in delta.iter_mut() {
            if let Some(old) = before.get(key) {
                count.calls -= old.calls;
                count.attempts -= old.attempts;
                count.throttled -= old.throttled;
                count.errors -= old.errors;
            }
        }
        delta.retain(|_, c| *c != CallCount::default());
        delta
    }

    pub fn calls(&self, service: &str, operation: &str) -> u64 {
        self.snapshot().get(&(service.to_owned(), operation.to_owned())).map_or(0, |c| c.calls)
    }

    /// Counts a call made outside an SDK client that carries this interceptor.
    pub fn record(&self, service: &str, operation: &str, failed: bool) {
        let mut counts = self.0.lock().expect("call counter lock");
        let count = counts.entry((service.to_owned(), operation.to_owned())).or_default();
        count.calls += 1;
        count.attempts += 1;
        count.errors += u64::from(failed);
    }

    fn update(&self, cfg: &ConfigBag, apply: impl FnOnce(&mut CallCount)) {
        let (service, operation) = match cfg.load::<Metadata>() {
            Some(meta) => (meta.service().to_owned(), meta.name().to_owned()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let mut counts = self.0.lock().expect("call counter lock");
        apply(counts.entry((service, operation)).or_default());
    }
}

/// Error codes AWS uses for throttling, as the SDK's own retry classifier lists them.
const THROTTLING_CODES: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "LimitExceededException",
];

impl Intercept for ApiCalls {
    fn name(&self) -> &'static str {
        "ApiCalls"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The error is type-erased here, so throttling is read off the wire: status 429, the
        // error-type header, or the error code in the (already buffered) JSON body.
        let throttled = context.response().is_some_and(|response| {
            let status = response.status().as_u16();
            if status == 429 {
                return true;
            }
            if status < 400 {
                return false;
            }
            let header = response.headers().get("x-amzn-errortype").unwrap_or_default();
            let body = response.body().bytes().map(|b| &b[..b.len().min(512)]).unwrap_or_default();
            let body = String::from_utf8_lossy(body);
            // The same list as `classify`, matched in the raw header or body.
            THROTTLING_CODES.iter().any(|code| {
                header.contains(code) || body.contains(&format!("#{code}\"")) || body.contains(&format!("\"{code}\""))
            })
        });
        self.update(cfg, |c| {
            c.attempts += 1;
            if throttled {
                c.throttled += 1;
            }
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = matches!(context.output_or_error(), Some(Err(_)));
        self.update(cfg, |c| {
            c.calls += 1;
            if failed {
                c.errors += 1;
            }
        });
        Ok(())
    }
}
