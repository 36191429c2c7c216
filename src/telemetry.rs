//! Logs and metrics. Logs: structured JSON through `tracing`. Metrics: named once here (the raw
//! `metrics` macros are banned elsewhere by clippy.toml), recorded once per invocation from its
//! `Report`, and written to stdout as CloudWatch Embedded Metric Format by
//! `metrics_cloudwatch_embedded`, so publishing them costs no API call.

#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;

use metrics::Unit;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use strum::IntoEnumIterator;

/// The CloudWatch namespace of every metric; the dashboards and alarms use it.
pub const NAMESPACE: &str = "SecurityHubEnricher";
/// The dimension every metric carries: which function emitted it.
pub const FUNCTION_DIMENSION: &str = "Function";

/// Every metric the functions emit. Dimensions beyond `Function` are named in each doc line;
/// all are low-cardinality (never an account or finding id).
///
/// CloudWatch names are the variant names, derived (`strum`), so the list cannot drift from the
/// enum: `Metric::iter()` is every metric, `metric.name()` its CloudWatch name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::EnumIter, strum::IntoStaticStr)]
pub enum Metric {
    RecordsIn,
    RecordsProcessed,
    RecordsSkipped,
    RecordsPoison,
    RecordsFailed,
    FindingsIn,
    FindingsEnriched,
    FindingsEnrichedPartial,
    /// Findings of accounts not known in time, left to the refresher (not written yet).
    FindingsDeferred,
    /// Dimension `Reason` (`label::REASON`).
    FindingsSkipped,
    /// Dimension `Reason` (`label::REASON`).
    FindingsFailed,
    /// BatchUpdateFindings calls Security Hub accepted.
    UpdateCalls,
    /// Findings carried by accepted BatchUpdateFindings calls.
    UpdateFindings,
    /// Σ ⌈findings per distinct payload / 100⌉: what a perfect writer would have used.
    UpdateCallsMinimum,
    /// BatchUpdateFindingsV2 calls the new Security Hub accepted.
    UpdateV2Calls,
    /// OCSF findings carried by accepted BatchUpdateFindingsV2 calls.
    UpdateV2Findings,
    /// PutEvents calls for enriched-finding events, retries included.
    PutEventsCalls,
    /// Enriched-finding events the bus accepted.
    EventsPublished,
    /// Enriched-finding events not published after every retry (their records are retried).
    EventsFailed,
    /// Dimension `Tier` (`label::TIER`: `memory`, `table`).
    CacheHits,
    /// Accounts looked up in Organizations.
    CacheMisses,
    StaleServed,
    LookupFailures,
    LookupsOutOfBudget,
    /// Dimensions `Service`, `Operation` (`label::SERVICE`, `label::OPERATION`).
    ApiCalls,
    /// Dimensions `Service`, `Operation` (`label::SERVICE`, `label::OPERATION`).
    ApiThrottles,
    /// Dimensions `Service`, `Operation` (`label::SERVICE`, `label::OPERATION`).
    ApiErrors,
    BatchDuration,
    /// The oldest record of the batch: now − approximateArrivalTimestamp.
    RecordAgeSeconds,
    ColdStart,
    /// Findings a sweep (refresher, `enricher-admin sweep`) looked at.
    SweepFindingsExamined,
    /// Accounts waiting in the refresh queue as a refresher run begins.
    RefreshQueueDepth,
    /// 1 per refresher run that completed with its state saved (`RefresherStalledAlarm` fires
    /// when none is counted in twice the refresh interval).
    RefreshRunsCompleted,
    /// Accounts the refresher's walk of the OU tree cached as a pass began.
    AccountsWarmed,
    InvestigationsQueued,
    InvestigationsStarted,
    InvestigationsCompleted,
    InvestigationsFailed,
    /// Jobs due but left for a later pass: the pass's Detective quota went to higher priorities.
    InvestigationsPending,
    /// Jobs ended without a call: the entity's account is outside the behavior graph.
    InvestigationsNotCovered,
    /// Enricher: findings that joined another finding's job in the same batch (same actor and window).
    /// Investigator: pending jobs joined to an earlier pending job of the same actor.
    InvestigationsJoined,
    /// Jobs whose investigation Detective was still running at the pass.
    InvestigationsRunning,
    /// Jobs retried after a transient failure, waiting for their next attempt.
    InvestigationsRetried,
    /// Jobs not due at the pass: waiting for their next attempt, scope window or another claim.
    InvestigationsNotDue,
    /// Jobs another runner claimed first.
    InvestigationsClaimsLost,
    /// Job steps that failed (the jobs table, Detective, the write-back); the next pass retries.
    InvestigationErrors,
    /// Jobs active longer than expected (`EXPECTED_JOB_SECONDS`); the log names what each waits for.
    InvestigationsOverdue,
}

impl Metric {
    /// The CloudWatch metric name: the variant's name.
    pub fn name(self) -> &'static str {
        self.into()
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
            Metric::FindingsSkipped | Metric::FindingsFailed => &[label::REASON],
            Metric::CacheHits => &[label::TIER],
            Metric::ApiCalls | Metric::ApiThrottles | Metric::ApiErrors => &[label::SERVICE, label::OPERATION],
            _ => &[],
        }
    }

    /// Zeros are recorded too: dashboards divide these series, and a missing zero is no data.
    pub fn count(self, value: usize) {
        metrics::counter!(self.name()).increment(value as u64);
    }

    /// Labelled series are created on first use only, so that an idle reason or operation does
    /// not become a series of zeros.
    pub fn count_with(self, labels: &[(&'static str, String)], value: u64) {
        let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())).collect();
        metrics::counter!(self.name(), labels).increment(value);
    }

    pub fn observe(self, value: f64) {
        metrics::histogram!(self.name()).record(value);
    }
}

/// Counts for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCount {
    /// Operations as the code asked for them.
    pub calls: u64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
    /// Attempts answered with a throttling error.
    pub throttled: u64,
    /// Operations that failed after every retry.
    pub errors: u64,
}

/// Counts by (service, operation), for one invocation or since start.
pub type CallCounts = BTreeMap<(String, String), CallCount>;

/// Dimension names beyond `Function`.
pub mod label {
    pub const REASON: &str = "Reason";
    pub const TIER: &str = "Tier";
    pub const SERVICE: &str = "Service";
    pub const OPERATION: &str = "Operation";
}

/// What one invocation did, as one report: the log line (whose counts balance) and the
/// metrics come from the same figures, for every function.
pub trait Report {
    /// The invocation's one INFO line.
    fn log(&self);
    /// The invocation's metrics (its API calls are recorded by `publish`).
    fn record_metrics(&self);
}

/// Logs and records one invocation's report, with its downstream calls.
pub fn publish(report: &impl Report, calls: &CallCounts) {
    report.log();
    report.record_metrics();
    record_api_calls(calls);
}

/// Registers units; call once at start, after the recorder is installed.
pub fn describe_metrics() {
    for metric in Metric::iter() {
        match metric {
            Metric::BatchDuration | Metric::RecordAgeSeconds | Metric::RefreshQueueDepth => {
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

/// Downstream calls, throttles and errors by service and operation.
pub fn record_api_calls(calls: &CallCounts) {
    for ((service, operation), count) in calls.iter().filter(|(_, c)| c.calls > 0 || c.attempts > 0) {
        let labels = [(label::SERVICE, service.clone()), (label::OPERATION, operation.clone())];
        Metric::ApiCalls.count_with(&labels, count.calls);
        Metric::ApiThrottles.count_with(&labels, count.throttled);
        Metric::ApiErrors.count_with(&labels, count.errors);
    }
}

/// Counted once, when an environment starts.
pub fn record_cold_start() {
    Metric::ColdStart.count(1);
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
