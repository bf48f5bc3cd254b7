# Every target installs what it needs on first use (Python venv, npm packages).
SHELL := /bin/bash
ENV ?= dev
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help deps mosquitto synth test lint deploy diff demo bench flash monitor ota redrive clean \
	device-add device-remove device-rotate

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt lambdas/receive_lambda/requirements.txt lambdas/send_lambda/requirements.txt \
		lambdas/status_lambda/requirements.txt lambdas/twilio_number_lambda/requirements.txt \
		lambdas/device_bindings_lambda/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-fund --no-audit --loglevel=error
	touch $@

# The local loop and the end-to-end tests need a real MQTT broker: Debian's mosquitto.
MOSQUITTO := $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
mosquitto:
ifeq ($(MOSQUITTO),)
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto
endif

deps: $(VENV)/.installed node_modules/.installed mosquitto  ## Install Python, Node and system dependencies.

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

demo: deps  ## The whole loop offline: make demo [TEXT="your text"] [INTERACTIVE=1] [OTA=1]
	$(PY) -m loop.demo $(if $(INTERACTIVE),--interactive) $(if $(OTA),--ota) $(if $(TEXT),"$(TEXT)")

bench: deps  ## The benchmark table (also bench/results.md and bench/latency.png).
	$(PY) bench/system_bench.py

# The board: THING defaults to the environment's only device, PORT to the only USB serial port.
THING ?=
PORT ?=
flash: $(VENV)/.installed  ## Flash a board: make flash ENV=dev THING=dev-reverser PORT=/dev/ttyUSB0 [FIRMWARE=esp8266.bin] [DRY_RUN=1]
	$(PY) -m device.tool flash --env $(ENV) --thing "$(THING)" --port "$(PORT)" \
		$(if $(FIRMWARE),--firmware "$(FIRMWARE)") $(if $(DRY_RUN),--dry-run)

# The fleet: devices/ENV/devices.json and the CSRs are committed; keys stay in .device-keys/.
NUMBER ?=
device-add: $(VENV)/.installed  ## Add a device (key, CSR, binding): make device-add ENV=dev THING=dev-porch NUMBER=+15555550142
	$(PY) -m device.tool add --env $(ENV) --thing "$(THING)" --number "$(NUMBER)"

device-remove: $(VENV)/.installed  ## Remove a device (its keys are archived): make device-remove ENV=dev THING=dev-porch
	$(PY) -m device.tool remove --env $(ENV) --thing "$(THING)"

device-rotate: $(VENV)/.installed  ## Rotate a device's certificate, then FINISH=1 after the reflash: make device-rotate ENV=dev THING=dev-porch [FINISH=1]
	$(PY) -m device.tool rotate --env $(ENV) --thing "$(THING)" $(if $(FINISH),--finish)

monitor: $(VENV)/.installed  ## Watch the board's console (Ctrl-] quits): make monitor PORT=/dev/ttyUSB0
	$(PY) -m device.tool monitor --port "$(PORT)"

redrive: $(VENV)/.installed  ## List the dead-letter queues with reasons, redrive what is worth it: make redrive ENV=dev [DRY_RUN=1]
	$(PY) -m tools.redrive --env $(ENV) $(if $(DRY_RUN),--dry-run)

clean:  ## Remove build output (keeps the venv, node_modules and device keys).
	rm -rf cdk.out cdk.out.* build .pytest_cache .mypy_cache .ruff_cache

ota: $(VENV)/.installed  ## Update boards' app over the air: make ota ENV=dev [THING=dev-reverser | ALL=1] [SOURCE=1] [DRY_RUN=1]
	$(PY) -m device.tool ota --env $(ENV) $(if $(ALL),--all,--thing "$(THING)") $(if $(SOURCE),--source) $(if $(DRY_RUN),--dry-run)
