.PHONY: test lint fix browser bench serve

test:  ## install everything and run the whole suite
	bash scripts/test

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy

fix:
	.venv/bin/ruff check --fix src tests benchmarks
	.venv/bin/ruff format src tests benchmarks

browser:
	.venv/bin/pytest -m browser

bench:
	.venv/bin/python benchmarks/ingest.py

serve:
	.venv/bin/trainvis serve
