# The two commands of the README's Quick start, and their helpers.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-rust test-emulator test-templates venv clean

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

## venv: the project-local Python environment for moto and the emulator (pinned)
venv: $(STAMP)
$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) target
