# DTMA console — the two commands: `make demo` and `make test`. Both set the machine up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap image demo demo-distributed down-distributed test lint unit pytest molecule bench clean down

bootstrap: ## Debian packages, uv, .venv, a running dockerd (idempotent)
	@bash scripts/bootstrap.sh

image: bootstrap ## The droplet image, built only when its recipe changed
	@$(BIN)/python -m sandbox.image

demo: image ## Sandbox fleet + console, and how to log in
	@bash scripts/demo.sh

demo-distributed: image ## Sandbox fleet + Redis + PostgreSQL + 2 workers + 2 consoles
	@bash scripts/demo-distributed.sh

down-distributed: ## Stop what demo-distributed started (by PID)
	@bash scripts/demo-distributed.sh down

test: image lint ## The whole suite, as CI runs it: every tests/<area> and Molecule, in parallel lanes
	@PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/pytest-areas.sh --with-molecule

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" ANSIBLE_CONFIG=ansible.cfg ANSIBLE_INVENTORY=localhost, $(BIN)/ansible-lint --profile production --offline -q roles playbooks

pytest: bootstrap ## every tests/<area> on a sandbox fleet of its own
	@PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/pytest-areas.sh

molecule: bootstrap
	@bash scripts/molecule.sh

bench: image ## Side-by-side benchmarks on the sandbox (ratios)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

down: ## Stop the demo console (by its PID), then the sandbox fleet and its emulator
	@if [ -f .data/console.pid ] && kill -0 "$$(cat .data/console.pid)" 2>/dev/null; then \
		kill "$$(cat .data/console.pid)"; \
		for _ in $$(seq 1 150); do kill -0 "$$(cat .data/console.pid)" 2>/dev/null || break; sleep 0.2; done; \
	fi; rm -f .data/console.pid
	$(BIN)/dtma-console sandbox down

clean: down
	rm -rf .data .sandbox
