//! Logs and metrics. Logs: structured JSON through `tracing`. Metrics: named once here (the raw
//! `metrics` macros are banned elsewhere by clippy.toml), recorded once per batch from its
//! report, and written to stdout as CloudWatch Embedded Metric Format once per invocation by
//! `metrics_cloudwatch_embedded`, so publishing them costs no API call.

#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;

use metrics::Unit;
use tracing_subscriber::EnvFilter;

use crate::aws::CallCount;
use crate::handler::BatchReport;

/// The CloudWatch namespace of every metric; the dashboards and alarms use it.
pub const NAMESPACE: &str = "SecurityHubEnricher";
/// The dimension every metric carries: which function emitted it.
pub const FUNCTION_DIMENSION: &str = "Function";

/// Every metric the functions emit. Dimensions beyond `Function` are named in each doc line;
/// all are low-cardinality (never an account or finding id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    RecordsIn,
    RecordsProcessed,
    RecordsSkipped,
    RecordsPoison,
    RecordsFailed,
    FindingsIn,
    FindingsEnriched,
    FindingsEnrichedPartial,
    /// Dimension `Reason`.
    FindingsSkipped,
    /// Dimension `Reason`.
    FindingsFailed,
    /// BatchUpdateFindings calls Security Hub accepted.
    UpdateCalls,
    /// Findings carried by accepted BatchUpdateFindings calls.
    UpdateFindings,
    /// Σ ⌈findings per distinct payload / 100⌉: what a perfect writer would have used.
    UpdateCallsMinimum,
    /// Dimension `Tier` (`memory`, `table`).
    CacheHits,
    /// Accounts looked up in Organizations.
    CacheMisses,
    StaleServed,
    LookupFailures,
    LookupsOutOfBudget,
    /// Dimensions `Service`, `Operation`.
    ApiCalls,
    /// Dimensions `Service`, `Operation`.
    ApiThrottles,
    /// Dimensions `Service`, `Operation`.
    ApiErrors,
    BatchDuration,
    /// The oldest record of the batch: now − approximateArrivalTimestamp.
    RecordAgeSeconds,
    ColdStart,
    InvestigationsQueued,
    InvestigationsStarted,
    InvestigationsCompleted,
    InvestigationsFailed,
}

impl Metric {
    pub const ALL: [Metric; 28] = [
        Metric::RecordsIn,
        Metric::RecordsProcessed,
        Metric::RecordsSkipped,
        Metric::RecordsPoison,
        Metric::RecordsFailed,
        Metric::FindingsIn,
        Metric::FindingsEnriched,
        Metric::FindingsEnrichedPartial,
        Metric::FindingsSkipped,
        Metric::FindingsFailed,
        Metric::UpdateCalls,
        Metric::UpdateFindings,
        Metric::UpdateCallsMinimum,
        Metric::CacheHits,
        Metric::CacheMisses,
        Metric::StaleServed,
        Metric::LookupFailures,
        Metric::LookupsOutOfBudget,
        Metric::ApiCalls,
        Metric::ApiThrottles,
        Metric::ApiErrors,
        Metric::BatchDuration,
        Metric::RecordAgeSeconds,
        Metric::ColdStart,
        Metric::InvestigationsQueued,
        Metric::InvestigationsStarted,
        Metric::InvestigationsCompleted,
        Metric::InvestigationsFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::RecordsIn => "RecordsIn",
            Metric::RecordsProcessed => "RecordsProcessed",
            Metric::RecordsSkipped => "RecordsSkipped",
            Metric::RecordsPoison => "RecordsPoison",
            Metric::RecordsFailed => "RecordsFailed",
            Metric::FindingsIn => "FindingsIn",
            Metric::FindingsEnriched => "FindingsEnriched",
            Metric::FindingsEnrichedPartial => "FindingsEnrichedPartial",
            Metric::FindingsSkipped => "FindingsSkipped",
            Metric::FindingsFailed => "FindingsFailed",
            Metric::UpdateCalls => "UpdateCalls",
            Metric::UpdateFindings => "UpdateFindings",
            Metric::UpdateCallsMinimum => "UpdateCallsMinimum",
            Metric::CacheHits => "CacheHits",
            Metric::CacheMisses => "CacheMisses",
            Metric::StaleServed => "StaleServed",
            Metric::LookupFailures => "LookupFailures",
            Metric::LookupsOutOfBudget => "LookupsOutOfBudget",
            Metric::ApiCalls => "ApiCalls",
            Metric::ApiThrottles => "ApiThrottles",
            Metric::ApiErrors => "ApiErrors",
            Metric::BatchDuration => "BatchDuration",
            Metric::RecordAgeSeconds => "RecordAgeSeconds",
            Metric::ColdStart => "ColdStart",
            Metric::InvestigationsQueued => "InvestigationsQueued",
            Metric::InvestigationsStarted => "InvestigationsStarted",
            Metric::InvestigationsCompleted => "InvestigationsCompleted",
            Metric::InvestigationsFailed => "InvestigationsFailed",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Metric::BatchDuration => Unit::Milliseconds,
            Metric::RecordAgeSeconds => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    /// Label names beyond `Function`, as CloudWatch dimension names.
    pub const fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::FindingsSkipped | Metric::FindingsFailed => &["Reason"],
            Metric::CacheHits => &["Tier"],
            Metric::ApiCalls | Metric::ApiThrottles | Metric::ApiErrors => &["Service", "Operation"],
            _ => &[],
        }
    }

    /// Zeros are recorded too: dashboards divide these series, and a missing zero is no data.
    fn count(self, value: usize) {
        metrics::counter!(self.name()).increment(value as u64);
    }

    /// Labelled series are created on first use only, so that an idle reason or operation does
    /// not become a series of zeros.
    fn count_with(self, labels: &[(&'static str, String)], value: u64) {
        let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())).collect();
        metrics::counter!(self.name(), labels).increment(value);
    }

    fn observe(self, value: f64) {
        metrics::histogram!(self.name()).record(value);
    }
}

/// Registers units; call once at start, after the recorder is installed.
pub fn describe_metrics() {
    for metric in Metric::ALL {
        match metric {
            Metric::BatchDuration | Metric::RecordAgeSeconds => {
                metrics::describe_histogram!(metric.name(), metric.unit(), "")
            }
            _ => metrics::describe_counter!(metric.name(), metric.unit(), ""),
        }
    }
}

/// Installs the EMF recorder for this function. Returns the collector to flush per invocation.
pub fn install_emf(function: &'static str) -> Result<&'static metrics_cloudwatch_embedded::Collector, String> {
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension(FUNCTION_DIMENSION, function)
        .emit_zeros(true)
        .init()
        .map_err(|e| e.to_string())?;
    describe_metrics();
    Ok(collector)
}

/// Records one batch: counters once per batch, low-cardinality labels only.
pub fn record_batch(report: &BatchReport, calls: &BTreeMap<(String, String), CallCount>) {
    let t = &report.tally;
    Metric::RecordsIn.count(t.records_in);
    Metric::RecordsProcessed.count(t.records_processed);
    Metric::RecordsSkipped.count(t.records_skipped);
    Metric::RecordsPoison.count(t.records_poison);
    Metric::RecordsFailed.count(t.records_failed);
    Metric::FindingsIn.count(t.findings_in);
    Metric::FindingsEnriched.count(t.findings_enriched);
    Metric::FindingsEnrichedPartial.count(t.findings_enriched_partial);
    for (reason, n) in t.findings_skipped.iter().filter(|(_, n)| **n > 0) {
        Metric::FindingsSkipped.count_with(&[("Reason", reason.clone())], *n as u64);
    }
    for (reason, n) in t.findings_failed.iter().filter(|(_, n)| **n > 0) {
        Metric::FindingsFailed.count_with(&[("Reason", reason.clone())], *n as u64);
    }
    Metric::UpdateCalls.count(report.updates.findings_per_call.len());
    Metric::UpdateFindings.count(report.updates.findings_per_call.iter().sum());
    Metric::UpdateCallsMinimum.count(report.minimum_update_calls);
    let p = &report.prefetch;
    Metric::CacheHits.count_with(&[("Tier", "memory".into())], p.memory_hits as u64);
    Metric::CacheHits.count_with(&[("Tier", "table".into())], p.store_hits as u64);
    Metric::CacheMisses.count(p.lookups);
    Metric::StaleServed.count(p.stale_served);
    Metric::LookupFailures.count(p.lookup_failures);
    Metric::LookupsOutOfBudget.count(p.lookups_out_of_budget);
    Metric::InvestigationsQueued.count(report.investigations.jobs_created);
    record_api_calls(calls);
    Metric::BatchDuration.observe(report.duration_ms as f64);
    if let Some(oldest) = report.record_ages.iter().copied().reduce(f64::max) {
        Metric::RecordAgeSeconds.observe(oldest);
    }
}

/// Downstream calls, throttles and errors by service and operation.
pub fn record_api_calls(calls: &BTreeMap<(String, String), CallCount>) {
    for ((service, operation), count) in calls.iter().filter(|(_, c)| c.calls > 0 || c.attempts > 0) {
        let labels = [("Service", service.clone()), ("Operation", operation.clone())];
        Metric::ApiCalls.count_with(&labels, count.calls);
        Metric::ApiThrottles.count_with(&labels, count.throttled);
        Metric::ApiErrors.count_with(&labels, count.errors);
    }
}

/// Counted once, when an environment starts.
pub fn record_cold_start() {
    Metric::ColdStart.count(1);
}

pub fn record_investigations(metric: Metric, n: usize) {
    debug_assert!(matches!(
        metric,
        Metric::InvestigationsQueued
            | Metric::InvestigationsStarted
            | Metric::InvestigationsCompleted
            | Metric::InvestigationsFailed
    ));
    metric.count(n);
}

/// Structured JSON logs; level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` (default INFO).
/// Logs go to stderr so that stdout carries only EMF documents.
pub fn init_logging() {
    let level =
        std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}
