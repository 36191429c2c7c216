# The two commands of the README's Quick start, and their helpers.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-rust test-emulator test-templates venv clean fuzz bench simulate loadtest-local
.PHONY: test-permissions package

# The AWS calls the local-stack tests make, one JSON object per line, written by the fault proxies of
# scripts/local-aws (LOCAL_AWS_CALL_LOG) during test-rust and checked by test-permissions.
CALL_LOG := $(CURDIR)/target/observed-calls.jsonl

## demo: run the enricher end to end on the local AWS stack and print what it did
demo: $(STAMP)
	cargo build --bin demo
	RUST_LOG=warn AWSEMU_FLAGS="--investigation-delay-ms 1500" scripts/local-aws run -- target/debug/demo

## test: formatting, lints, and every test (unit, property, handler, local AWS stack, emulator, templates)
test: lint test-emulator test-templates test-rust test-permissions

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test-emulator: $(STAMP)
	$(PYTHON) -m unittest discover -s loadtest/emulator

## test-templates: cfn-lint and the template/code consistency tests
test-templates: $(STAMP)
	$(PYTHON) -m unittest discover -s pipes/tests -t .

test-rust: export LOCAL_AWS_CALL_LOG = $(CALL_LOG)
# Debug builds poll the refresher's nested futures (walk, passes, pipeline, updater) in deep,
# unoptimized frames: more than a test thread's default 2 MiB. Release builds, and the Lambda
# runtime's main thread (8 MiB), need no such setting.
test-rust: export RUST_MIN_STACK = 8388608
test-rust: $(STAMP)
	rm -f $(CALL_LOG)
	mkdir -p $(dir $(CALL_LOG))
	LOCAL_STACK_REQUIRED=1 AWSEMU_FLAGS="--investigation-delay-ms 300" scripts/local-aws run -- cargo test --all-targets

## test-permissions: every AWS call the functions made during test-rust is allowed by their roles in
## pipes/template.yaml (and the contact role of pipes/management-account.yaml), in every deployment
## variant; fails naming the function, the operation and the missing grant, and fails when the log
## is missing or holds no function's call (run test-rust first)
test-permissions: $(STAMP)
	$(PYTHON) -m pipes.tests.iam_check --require-calls $(CALL_LOG)

# The Lambda functions pipes/template.yaml deploys (CodeUri: ../target/lambda/<name>/) and their
# architecture (Globals: Architectures). ARCH=x86_64 builds for x86-64 instead; the template must then
# say x86_64 too.
LAMBDA_BINS := enricher investigator account-events refresher
# The operator's CLI, built for the machine that runs `make package` (not for Lambda).
OPERATOR_BIN := enricher-admin
ARCH ?= arm64
PACKAGE_STAMP := $(VENV)/.package-installed

## package: build the functions for Lambda (release, $(ARCH)) into target/lambda/<name>/bootstrap, with
## cargo-lambda and Zig from requirements-package.txt (pinned, in .venv); needs the Rust target
## (rustup target add aarch64-unknown-linux-gnu; cargo-lambda adds it when rustup can); and the
## operator's CLI for this machine (host target, release): target/release/enricher-admin
package: $(PACKAGE_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --$(subst _,-,$(ARCH)) $(addprefix --bin ,$(LAMBDA_BINS))
	@for bin in $(LAMBDA_BINS); do test -x target/lambda/$$bin/bootstrap || { echo "missing target/lambda/$$bin/bootstrap" >&2; exit 1; }; done
	cargo build --release --bin $(OPERATOR_BIN)
	@test -x target/release/$(OPERATOR_BIN) || { echo "missing target/release/$(OPERATOR_BIN)" >&2; exit 1; }
	@echo "built: $(foreach bin,$(LAMBDA_BINS),target/lambda/$(bin)/bootstrap) target/release/$(OPERATOR_BIN)"

$(PACKAGE_STAMP): requirements-package.txt $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-package.txt
	touch $@

FUZZ_SECONDS ?= 60

## fuzz: fuzz the decoder and the pure path for FUZZ_SECONDS (not part of `make test`).
## cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p fuzz/corpus/decode
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode corpus/decode seeds -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024

## bench: criterion benchmarks of the pure path against a bare parse (not part of `make test`)
bench:
	cargo bench -p securityhub-enricher-loadtest --bench pure_path

## simulate: the load-test simulator with its defaults, summary and report in loadtest/out/
simulate:
	mkdir -p loadtest/out
	cargo run --release --bin loadtest -- simulate --json loadtest/out/summary.json --report loadtest/out/report.svg

## loadtest-local: generated findings through the whole local stack, summary in loadtest/out/
loadtest-local: $(STAMP)
	mkdir -p loadtest/out
	cargo build --release --bin loadtest
	RUST_LOG=warn scripts/local-aws run -- target/release/loadtest local --json loadtest/out/local.json

## venv: the project-local Python environment for moto and the emulator (pinned)
venv: $(STAMP)
$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) target
