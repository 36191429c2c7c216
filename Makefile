# The two commands of the README's Quick start, and their helpers.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-rust test-emulator test-templates venv clean fuzz bench simulate loadtest-local

## demo: run the enricher end to end on the local AWS stack and print what it did
demo: $(STAMP)
	cargo build --bin demo
	RUST_LOG=warn AWSEMU_FLAGS="--investigation-delay-ms 1500" scripts/local-aws run -- target/debug/demo

## test: formatting, lints, and every test (unit, property, handler, local AWS stack, emulator, templates)
test: lint test-emulator test-templates test-rust

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test-emulator: $(STAMP)
	$(PYTHON) -m unittest discover -s loadtest/emulator

## test-templates: cfn-lint and the template/code consistency tests
test-templates: $(STAMP)
	$(PYTHON) -m unittest discover -s pipes/tests -t .

test-rust: $(STAMP)
	AWSEMU_FLAGS="--investigation-delay-ms 300" scripts/local-aws run -- cargo test --all-targets

FUZZ_SECONDS ?= 60

## fuzz: fuzz the decoder and the pure path for FUZZ_SECONDS (not part of `make test`).
## cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p fuzz/corpus/decode
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode corpus/decode seeds -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024

## bench: criterion benchmarks of the pure path against a bare parse (not part of `make test`)
bench:
	cargo bench --bench pure_path

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
