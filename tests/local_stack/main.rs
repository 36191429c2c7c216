//! Tests against the local AWS stack: moto's server and the project's emulator, each behind a
//! fault proxy, started on free loopback ports by `scripts/local-aws` (`make test` runs them).
//! One test binary, so the stack's absence is said once and the build links once.
//!
//! - `local_aws`: each adapter against moto and the emulator, call counts, end to end.
//! - `investigations`: one StartInvestigation per (entity, window); the investigator's states.
//! - `faults`: throttling storms, outages, resets, AccessDenied, Detective failures.
//! - `hubs`: both hubs in one run, routing, enriched-finding events through an EventBridge rule.
//! - `doctor`: `enricher-admin doctor` on a healthy deployment and with faults injected.
//! - `redrive`: `enricher-admin redrive` and `--stack` on SQS, Kinesis, CloudFormation and Lambda.
//! - `pending_store`: the pending-writes store in the cache table (holds, index, claims).
//! - `sweep_paths`: the operator's sweep over a cold organization, both hubs, at deployment settings; an OU move.

mod doctor;
mod faults;
mod hubs;
mod investigations;
mod local_aws;
mod pending_store;
mod redrive;
mod sweep_paths;

use std::io::Write as _;
use std::sync::Once;

/// True when the local AWS stack is up. Without it each test returns at once and this binary
/// says so in one line; with `LOCAL_STACK_REQUIRED` set (as `make test` sets it) a missing stack
/// fails instead, so the suite can never pass without having run.
pub fn stack_up() -> bool {
    if std::env::var_os("LOCAL_AWS_MOTO_URL").is_some() {
        return true;
    }
    if std::env::var_os("LOCAL_STACK_REQUIRED").is_some() {
        panic!("LOCAL_STACK_REQUIRED is set but the local AWS stack is not running: run `make test`");
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // Straight to stderr: libtest captures `eprintln!`, and this line is for the person
        // running `cargo test`.
        let _ = writeln!(
            std::io::stderr(),
            "local_stack: these tests need the local AWS stack and were not run; run `make test` or `scripts/local-aws run -- cargo test --test local_stack`"
        );
    });
    false
}
