# These need nothing before them on a fresh clone:
#   make test   sets up .venv if needed, then runs the test suite
#   make bench  sets up .venv if needed, then runs the benchmark suite (zoo bench) into bench/RESULTS.md
#   make demo   sets up .venv if needed, then starts the Gradio demo on http://127.0.0.1:7860
PY := .venv/bin/python

.PHONY: setup test test-compat lint bench demo clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest

# the suite on the lowest and on the highest versions pyproject.toml allows (scripts/compat.sh)
test-compat: setup
	bash scripts/compat.sh oldest
	bash scripts/compat.sh newest

lint: setup
	.venv/bin/ruff check zoo tests bench

bench: setup
	$(PY) bench/run.py

demo: setup
	$(PY) -m demos.app

clean:
	rm -rf .venv .venv-compat-* .pytest_cache build dist *.egg-info
