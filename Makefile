# Two commands need nothing before them on a fresh clone:
#   make test   sets up .venv if needed, then runs the test suite
#   make bench  sets up .venv if needed, then runs the text throughput benchmark
PY := .venv/bin/python

.PHONY: setup test lint bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest

lint: setup
	.venv/bin/ruff check zoo tests bench

bench: setup
	$(PY) bench/text_throughput.py

clean:
	rm -rf .venv .pytest_cache build dist *.egg-info
