# Every target installs what it needs on first use (Python venv, npm packages).
SHELL := /bin/bash
ENV ?= dev
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help deps synth test lint deploy diff demo bench flash clean

help:  ## List the targets.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt lambdas/receive/requirements.txt lambdas/send/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-fund --no-audit --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed  ## Install Python and Node dependencies.

synth: deps  ## Synthesize ENV's stack (bundles the Lambdas, no AWS call): make synth ENV=prod
	$(CDK) synth --quiet -c env=$(ENV)
	@echo "Synthesized TextDevice-$(ENV): cdk.out/TextDevice-$(ENV).template.json"

test: deps  ## Run every test (unit, handler, construct, device, end-to-end).
	$(PY) -m pytest

lint: deps  ## ruff and mypy.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

diff: deps  ## Show what a deploy of ENV would change (needs AWS credentials).
	$(CDK) diff -c env=$(ENV)

deploy: deps  ## Deploy ENV's stack (needs AWS credentials): make deploy ENV=prod
	$(CDK) deploy -c env=$(ENV) --require-approval broadening

demo: synth  ## The whole loop offline (until it lands: synthesize the dev stack).

clean:  ## Remove build output (keeps the venv, node_modules and device keys).
	rm -rf cdk.out cdk.out.* build .pytest_cache .mypy_cache .ruff_cache
