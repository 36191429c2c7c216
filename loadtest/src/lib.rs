//! The harness of securityhub-enricher: everything that only tests, demonstrates or loads the
//! product, kept out of the crate that ships to Lambda.
//!
//! | module | owns |
//! |---|---|
//! | `batches` | the Pipe's part: a record in its envelope, batches cut at the batch size and 6 MB, redelivery after a partial failure |
//! | `coalesce` | a discrete-event model of the write path under a burst: per-batch writes, a pending-writes store, deferring to the sweep |
//! | `fakes` | in-memory implementations of the product's ports (hub, ledger, cache store, account source) and a builder for an enricher wired to them |
//! | `local` | the local AWS stack: SDK config per test account, the functions' settings, tables, organization seeding, findings, a local pipe, the end-to-end load run |
//! | `loadgen` | a synthetic organization and realistic findings, by seed |
//! | `replay` | events onto a Kinesis stream as the EventBridge rule puts them |
//! | `pipeline` | the pure path in one call (benchmark, memory check, fuzzing) |
//! | `posture` | the posture figure: a refresher pass over a generated organization and the EMF documents of its counts |
//! | `simulate` | the load-test simulator |
//! | `report` | the simulator's SVG report |
//!
//! Binaries: `demo` (`make demo`) and `loadtest` (`make simulate`, `make loadtest-local`).

pub mod batches;
pub mod coalesce;
pub mod fakes;
pub mod loadgen;
pub mod local;
pub mod pipeline;
pub mod posture;
pub mod replay;
pub mod report;
pub mod simulate;
