//! securityhub-enricher: enriches AWS Security Hub findings with AWS Organizations account
//! metadata, one Kinesis batch at a time, and runs the Detective investigations they ask for.
//!
//! This crate is what ships: the library and the binaries that run in AWS (`enricher`,
//! `investigator`, `account-events`) or that an operator runs against it (`enricher-admin`).
//! The load-test harness, the local-stack runner, the demo and the in-memory fakes of the
//! ports live in the `loadtest/` crate, which depends on this one and never the other way.
//!
//! Dependencies point one way: `bin/` → `wiring` → `adapters` and `service` → `ports`,
//! `limits`, `telemetry`, `config` → `core`. `service` (the orchestration) sits beside the
//! adapters and never sees one: it works through the ports, so tests run it on fakes.
//!
//! | module | kind | owns |
//! |---|---|---|
//! | `core::finding` | pure | the ASFF subset we read, the identifier we write by; the hub a finding belongs to |
//! | `core::ocsf` | pure | the OCSF subset of the new hub ("Findings Imported V2"), its identifiers, mapped onto the one finding view |
//! | `core::event` | pure | batch shapes in (Pipe array, `{"Records"}`), the EventBridge envelope, `decode_batch`, the partial-batch response |
//! | `core::outcome` | pure | per-record and per-finding outcomes, the batch tally, settling a batch |
//! | `core::account` | pure | account metadata as looked up and cached |
//! | `core::cache_entry` | pure | cache entry lifetimes: fresh, stale, expired |
//! | `core::fields` | pure | Security Hub's field limits and the UserDefinedFields keys we own |
//! | `core::enrich` | pure | metadata → Note and UserDefinedFields within limits; the fallback and completeness rule |
//! | `core::comment` | pure | the new hub's `Comment` (≤ 512, marked as ours): whose comment a finding carries, the loop guard |
//! | `core::routing` | pure | `ROUTING_POLICY` as data: owner, environment, criticality per account |
//! | `core::enriched_event` | pure | the versioned "Finding Enriched" event and PutEvents' limits |
//! | `core::plan` | pure | screen (loop guard), dedup, group into the fewest update requests (V1 by payload, V2 by comment) |
//! | `core::select` | pure | which findings and IAM entities are investigated, and when |
//! | `core::investigation` | pure | job domain types, the verdict and its note |
//! | `core::account_change` | pure | which accounts a forwarded CloudTrail event changed |
//! | `core::rate`, `core::time`, `core::error` | pure | rates and shares, the one clock, the error chain |
//! | `ports` | port | traits between service and adapters: metadata store and source, findings writers (V1, V2) and reader, event publisher, quota ledger, jobs, Detective, the doctor's deployment probe |
//! | `adapters::sdk` | adapter | SDK config, app names, the one error classifier, call counting |
//! | `adapters::cache_table` | adapter | the cache table: its schema (one owner), the account tier, the quota ledger item |
//! | `adapters::organizations` | adapter | Organizations and Account Management lookups |
//! | `adapters::securityhub` | adapter | BatchUpdateFindings, GetFindings and BatchUpdateFindingsV2 |
//! | `adapters::eventbridge` | adapter | PutEvents to `ENRICHED_EVENTS_BUS` |
//! | `adapters::jobs_table`, `adapters::detective` | adapter | the job table, Detective |
//! | `adapters::deployment` | adapter | the doctor's read-only probe of a deployment (one call per question, errors with their AWS code) |
//! | `service::handler` | glue | one batch, start to finish |
//! | `service::batch_report` | glue | the per-batch report: its log line and metrics |
//! | `service::directory` | glue | memory → table → source, in a time budget |
//! | `service::updater`, `service::quota_share` | glue | pacing and retrying updates of both hubs, sharing the quota |
//! | `service::publisher` | glue | enriched-finding events, 10 per PutEvents, failed entries retried |
//! | `service::fanout`, `service::investigator` | glue | queueing investigations; the investigator's pass |
//! | `service::account_events` | glue | forgetting changed accounts |
//! | `service::doctor` | glue | `enricher-admin doctor`: each deployment check, pass or fail with its fix |
//! | `limits` | infrastructure | client-side rate limits (`governor`) within a deadline, jittered backoff |
//! | `telemetry` | infrastructure | metric names, EMF, JSON logs, the `Report` trait, call counts |
//! | `config` | config | the one place environment variables are read and validated |
//! | `wiring` | wiring | the production object graph, built once in `main` |

pub mod adapters;
pub mod config;
pub mod core;
pub mod limits;
pub mod ports;
pub mod service;
pub mod telemetry;
pub mod wiring;
