//! securityhub-enricher: enriches AWS Security Hub findings with AWS Organizations account
//! metadata, one Kinesis batch at a time, and runs the Detective investigations they ask for.
//!
//! This crate is what ships: the library and the binaries that run in AWS (`enricher`,
//! `investigator`, `account-events`, `refresher`) or that an operator runs against it (`enricher-admin`).
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
//! | `core::enrich` | pure | `Rendering` (`TAG_KEYS`, `ROUTING_POLICY`, `OWNER_TAG_KEY`): metadata → Note and UserDefinedFields within limits, the Note's account and investigation parts; the fallback and completeness rule |
//! | `core::comment` | pure | the new hub's `Comment` (≤ 512, marked as ours): whose comment a finding carries, the loop guard |
//! | `core::routing` | pure | `ROUTING_POLICY` as data: owner, environment, criticality per account |
//! | `core::enriched_event` | pure | the versioned "Finding Enriched" event and PutEvents' limits |
//! | `core::plan` | pure | screen (the loop guard for events), dedup, "current" and "still partial" for both hubs, group into the fewest update requests (V1 by payload, V2 by comment) |
//! | `core::posture` | pure | posture counts of a pass: by owner, environment, criticality and OU path × one severity scale for both hubs, complete/Partial/stale, oldest critical and high; top owners, `other`, `unowned` |
//! | `core::pending` | pure | coalescing across batches: the snapshot of a waiting finding, when the quota is free, which accounts wait and which are written |
//! | `core::quotas` | pure | every shared rate declared once: each API's quota and the default share of each holder, with the test that they fit |
//! | `core::select` | pure | investigation selection; re-exports its four files' public items as `core::select::X` |
//! | `core::select::policy` | pure | trigger policy: which findings are investigated, and when (criteria, asks, `may_investigate`) |
//! | `core::select::iam` | pure | ASFF IAM entity decoding: resources → IAM user and role ARNs, per `PrincipalType` |
//! | `core::select::sequence` | pure | attack sequences: the IAM entities of a sequence's actors, its signals |
//! | `core::select::jobs` | pure | job planning: one job per actor and overlapping window |
//! | `core::select::test_support` | test | the findings and batches the select tests are built from |
//! | `core::investigation` | pure | job domain types, the verdict and its note |
//! | `core::account_change` | pure | which accounts a forwarded CloudTrail event changed |
//! | `core::redrive` | pure | a Kinesis source's dead letter (`KinesisBatchInfo`), sequence-number order, PutRecords' limits |
//! | `core::role_calls` | pure | pipes/role-calls.json embedded: each function's calls as IAM actions on resources, resolved against a deployed stack for the doctor |
//! | `core::rate`, `core::time`, `core::error` | pure | rates and shares, the one clock, the error chain |
//! | `ports` | port | traits between service and adapters, one module per capability: |
//! | `ports::metadata`, `ports::findings`, `ports::events` | port | metadata store and source; findings writers (V1, V2) and reader; the event publisher |
//! | `ports::ledger`, `ports::jobs`, `ports::detective`, `ports::sweep_state` | port | quota ledger; job table; Detective; the sweep's checkpoint, refresh queue and run lease |
//! | `ports::posture` | port | the last completed pass's posture counts and the running pass's |
//! | `ports::pending` | port | the pending-writes store: hold, the index of waiting accounts, a drainer's claim, release |
//! | `ports::redrive`, `ports::deployment` | port | the dead-letter queue and stream of `redrive`; the doctor's deployment probe |
//! | `adapters::sdk` | adapter | SDK config, app names, the one error classifier, call counting |
//! | `adapters::cache_table` | adapter | the cache table (`CACHE_TABLE`), one file per kind of item: |
//! | `adapters::cache_table::schema` | adapter | its key and attributes, in one place |
//! | `adapters::cache_table::store`, `adapters::cache_table::ledger` | adapter | the account metadata tier; the quota ledger item |
//! | `adapters::cache_table::sweep_state` | adapter | the sweep's checkpoint and the queue of accounts to refresh |
//! | `adapters::cache_table::posture` | adapter | the posture counts' items (`posture#last-pass`, `posture#progress`) |
//! | `adapters::cache_table::pending` | adapter | the pending-writes store: `pending#<account>` items, their sharded index, claims |
//! | `adapters::cache_table::capacity` | adapter | the capacity units the store's requests consume, sized from the items by DynamoDB's rules |
//! | `adapters::organizations` | adapter | Organizations and Account Management lookups |
//! | `adapters::securityhub` | adapter | BatchUpdateFindings, GetFindings and BatchUpdateFindingsV2 |
//! | `adapters::eventbridge` | adapter | PutEvents to `ENRICHED_EVENTS_BUS` |
//! | `adapters::jobs_table`, `adapters::detective` | adapter | the job table, Detective |
//! | `adapters::redrive` | adapter | the pipe's dead-letter queue (SQS) and the stream read back and written again (Kinesis) |
//! | `adapters::stack` | adapter | a deployed stack read back for `enricher-admin --stack`: its resources and the enricher's environment |
//! | `adapters::deployment` | adapter | the doctor's read-only probe of a deployment (one call per question, errors with their AWS code) |
//! | `service::pipeline` | glue | the one enrichment pipeline every path writes through: render, decide current, group, publish, write |
//! | `service::handler` | glue | one batch, start to finish; queues the accounts it could not resolve |
//! | `service::batch_report` | glue | the per-batch report: its log line and metrics |
//! | `service::directory` | glue | memory → table → source, in a time budget |
//! | `service::pending` | glue | coalescing across batches: holds a batch's small account groups while the quota is saturated (by count, or because writes queue for it), drains them through the pipeline (the enricher after each batch, the refresher's run every minute) |
//! | `service::updater`, `service::quota_share` | glue | pacing and retrying updates of both hubs, sharing the quota |
//! | `service::publisher` | glue | enriched-finding events, 10 per PutEvents, failed entries retried |
//! | `service::fanout`, `service::investigator` | glue | queueing investigations; the investigator's pass |
//! | `service::account_events` | glue | forgetting changed accounts |
//! | `service::sweep` | glue | the sweep: every active finding of both hubs that needs work, through the same pipeline as the stream |
//! | `service::refresh` | glue | one `refresher` run under the run lease: queued accounts first, then the pass from its checkpoint when due, warming the directory beside it; the operator's sweep runs the same loop |
//! | `service::posture_report` | glue | `enricher-admin report`: the counts from the cache table, as a table, CSV or JSON |
//! | `service::redrive` | glue | dead-lettered batches sent back, what could not be sent said per dead letter |
//! | `service::doctor` | glue | `enricher-admin doctor`: each deployment check, pass or fail with its fix |
//! | `limits` | infrastructure | client-side rate limits (`governor`) within a deadline, jittered backoff |
//! | `telemetry` | infrastructure | metric names, EMF (and a pass's posture documents), JSON logs, the `Report` trait, call counts |
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
