# One entry point for people and CI. `make test` works from a fresh clone.
.PHONY: setup run test lint bench

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/python trainer/main.py

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench: setup
	.venv/bin/python -m benchmarks.bench_verify
	.venv/bin/python -m benchmarks.bench_training
