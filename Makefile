# One entry point for people and CI. `make test` works from a fresh clone.
.PHONY: setup run test test-quick lint bench

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/python trainer/main.py

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

# the developer loop: everything but whole jobs, actors and extra servers (CI runs `make test`)
test-quick: setup
	.venv/bin/python -m pytest -m "not e2e"

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup
	.venv/bin/python -m benchmarks.bench_verify
	.venv/bin/python -m benchmarks.bench_training
