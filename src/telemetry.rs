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
    /// Findings held in the pending-writes store, to be written with later findings of their
    /// account while BatchUpdateFindings' quota is saturated (issue 21's coalescing).
    FindingsPending,
    /// Findings that waited in the pending-writes store and were written by a drain (the
    /// enricher's after a batch, the refresher's every minute).
    PendingFindingsWritten,
    /// Findings the pending-writes store could not take, written at once instead.
    PendingHoldFailures,
    /// DynamoDB write capacity units the pending-writes store's requests consumed (computed
    /// from the item sizes by DynamoDB's rules: `adapters::cache_table::capacity`).
    PendingStoreWriteUnits,
    /// DynamoDB read capacity units (strongly consistent) the pending-writes store consumed.
    PendingStoreReadUnits,
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
    // Posture: one set of documents at the end of each pass over every finding
    // (`posture_documents`), the counts `enricher-admin report` prints.
    /// Findings the pass examined, on both hubs.
    PostureFindings,
    /// Of them, carrying their account's current metadata, complete.
    PostureComplete,
    /// Of them, `Partial` (account not resolved yet).
    PosturePartial,
    /// Of them, whose write failed: still older metadata.
    PostureStale,
    /// Of them, not ours to enrich (another's OCSF comment, refused, invalid account).
    PostureNotEnriched,
    PostureOpenCritical,
    PostureOpenHigh,
    /// Findings whose account routing gave no owner.
    PostureUnowned,
    /// Dimension `Owner` (`label::OWNER`): the top owners, `other`, `unowned`.
    OpenCriticalByOwner,
    /// Dimension `Owner`.
    OpenHighByOwner,
    /// Dimension `Owner`.
    OpenMediumByOwner,
    /// Dimension `Owner`.
    OpenLowByOwner,
    /// Dimension `Owner`.
    OpenInformationalByOwner,
    /// Dimension `Owner`: every severity, unknown included.
    OpenFindingsByOwner,
    /// Dimension `Owner`: since the oldest open critical finding was first observed.
    OldestCriticalAgeByOwner,
    /// Dimension `Owner`: since the oldest open high finding was first observed.
    OldestHighAgeByOwner,
    /// Dimension `Environment` (`label::ENVIRONMENT`; `unset` when routing sets none).
    OpenCriticalByEnvironment,
    /// Dimension `Environment`.
    OpenHighByEnvironment,
    /// Dimension `Environment`.
    OpenMediumByEnvironment,
    /// Dimension `Environment`.
    OpenLowByEnvironment,
    /// Dimension `Environment`.
    OpenInformationalByEnvironment,
    /// Dimension `Environment`.
    OpenFindingsByEnvironment,
    /// Dimension `Criticality` (`label::CRITICALITY`; `unset` when routing sets none).
    OpenCriticalByCriticality,
    /// Dimension `Criticality`.
    OpenHighByCriticality,
    /// Dimension `Criticality`.
    OpenMediumByCriticality,
    /// Dimension `Criticality`.
    OpenLowByCriticality,
    /// Dimension `Criticality`.
    OpenInformationalByCriticality,
    /// Dimension `Criticality`.
    OpenFindingsByCriticality,
}

impl Metric {
    /// The CloudWatch metric name: the variant's name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub const fn unit(self) -> Unit {
        match self {
            Metric::BatchDuration => Unit::Milliseconds,
            Metric::RecordAgeSeconds | Metric::OldestCriticalAgeByOwner | Metric::OldestHighAgeByOwner => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    /// Label names beyond `Function`, as CloudWatch dimension names.
    pub const fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::FindingsSkipped | Metric::FindingsFailed => &[label::REASON],
            Metric::CacheHits => &[label::TIER],
            Metric::ApiCalls | Metric::ApiThrottles | Metric::ApiErrors => &[label::SERVICE, label::OPERATION],
            Metric::OpenCriticalByOwner
            | Metric::OpenHighByOwner
            | Metric::OpenMediumByOwner
            | Metric::OpenLowByOwner
            | Metric::OpenInformationalByOwner
            | Metric::OpenFindingsByOwner
            | Metric::OldestCriticalAgeByOwner
            | Metric::OldestHighAgeByOwner => &[label::OWNER],
            Metric::OpenCriticalByEnvironment
            | Metric::OpenHighByEnvironment
            | Metric::OpenMediumByEnvironment
            | Metric::OpenLowByEnvironment
            | Metric::OpenInformationalByEnvironment
            | Metric::OpenFindingsByEnvironment => &[label::ENVIRONMENT],
            Metric::OpenCriticalByCriticality
            | Metric::OpenHighByCriticality
            | Metric::OpenMediumByCriticality
            | Metric::OpenLowByCriticality
            | Metric::OpenInformationalByCriticality
            | Metric::OpenFindingsByCriticality => &[label::CRITICALITY],
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
    pub const OWNER: &str = "Owner";
    pub const ENVIRONMENT: &str = "Environment";
    pub const CRITICALITY: &str = "Criticality";
}

/// EMF's limits per document (CloudWatch Embedded Metric Format specification).
pub const EMF_MAX_METRICS: usize = 100;
pub const EMF_MAX_DIMENSIONS: usize = 30;

/// A pass's posture counts as EMF documents, written once at the pass's end: one with the
/// organization's totals, then one per owner, environment and criticality (each value of a
/// dimension needs its own document), each well within `EMF_MAX_METRICS` metrics and
/// `EMF_MAX_DIMENSIONS` dimensions. Written here rather than through the metrics recorder,
/// which repeats every series it has seen on each later flush (zeros, or a gauge's last value):
/// a pass's counts are a snapshot, published once per pass, and an owner that has left the top
/// N must not go on being published.
pub fn posture_documents(pass: &crate::core::posture::CompletedPass, function: &str, now_epoch_ms: u64) -> Vec<String> {
    use crate::core::posture::{Severity, Tally};
    let counts = &pass.counts;
    let document = |dimension: Option<(&str, &str)>, values: Vec<(Metric, f64)>| -> String {
        let mut dims = vec![FUNCTION_DIMENSION];
        let mut doc = serde_json::Map::new();
        doc.insert(FUNCTION_DIMENSION.into(), function.into());
        if let Some((name, value)) = dimension {
            dims.push(name);
            doc.insert(name.into(), dimension_value(value).into());
        }
        let metrics: Vec<serde_json::Value> =
            values.iter().map(|(m, _)| serde_json::json!({"Name": m.name(), "Unit": unit_name(m.unit())})).collect();
        for (metric, value) in &values {
            doc.insert(metric.name().into(), (*value).into());
        }
        doc.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": now_epoch_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": metrics}],
            }),
        );
        serde_json::Value::Object(doc).to_string()
    };
    let by_severity = |tally: &Tally, names: [Metric; 6]| -> Vec<(Metric, f64)> {
        let severities = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Informational];
        let mut values: Vec<(Metric, f64)> =
            severities.iter().zip(names).map(|(&s, m)| (m, tally.get(s) as f64)).collect();
        values.push((names[5], tally.total() as f64));
        values
    };
    let now = (now_epoch_ms / 1000) as i64;
    let mut documents = vec![document(
        None,
        vec![
            (Metric::PostureFindings, counts.total as f64),
            (Metric::PostureComplete, counts.complete as f64),
            (Metric::PosturePartial, counts.partial as f64),
            (Metric::PostureStale, counts.stale as f64),
            (Metric::PostureNotEnriched, counts.not_enriched as f64),
            (Metric::PostureOpenCritical, counts.open(Severity::Critical) as f64),
            (Metric::PostureOpenHigh, counts.open(Severity::High) as f64),
            (Metric::PostureUnowned, counts.unowned() as f64),
        ],
    )];
    use Metric::*;
    for (owner, tally) in &counts.by_owner {
        let mut values = by_severity(
            tally,
            [
                OpenCriticalByOwner,
                OpenHighByOwner,
                OpenMediumByOwner,
                OpenLowByOwner,
                OpenInformationalByOwner,
                OpenFindingsByOwner,
            ],
        );
        for (metric, oldest) in
            [(OldestCriticalAgeByOwner, tally.oldest_critical), (OldestHighAgeByOwner, tally.oldest_high)]
        {
            if let Some(at) = oldest {
                values.push((metric, (now - at).max(0) as f64));
            }
        }
        documents.push(document(Some((label::OWNER, owner)), values));
    }
    for (environment, tally) in &counts.by_environment {
        let names = [
            OpenCriticalByEnvironment,
            OpenHighByEnvironment,
            OpenMediumByEnvironment,
            OpenLowByEnvironment,
            OpenInformationalByEnvironment,
            OpenFindingsByEnvironment,
        ];
        documents.push(document(Some((label::ENVIRONMENT, environment)), by_severity(tally, names)));
    }
    for (criticality, tally) in &counts.by_criticality {
        let names = [
            OpenCriticalByCriticality,
            OpenHighByCriticality,
            OpenMediumByCriticality,
            OpenLowByCriticality,
            OpenInformationalByCriticality,
            OpenFindingsByCriticality,
        ];
        documents.push(document(Some((label::CRITICALITY, criticality)), by_severity(tally, names)));
    }
    documents
}

/// CloudWatch takes dimension values of 1 to 1024 ASCII characters: others become `_`.
fn dimension_value(value: &str) -> String {
    let ascii: String =
        value.chars().take(1024).map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '_' }).collect();
    if ascii.trim().is_empty() { "_".to_owned() } else { ascii }
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "Seconds",
        Unit::Milliseconds => "Milliseconds",
        _ => "Count",
    }
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
