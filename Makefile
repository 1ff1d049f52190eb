# The set-up: every pip call uses pip (not uv) with constraints.txt.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= dev,torch,sklearn-models,serve,dp,ray,onnx,frameworks,text
STAMP  := $(VENV)/.installed
# Test worker processes (pytest-xdist), one per core of the 2-core machine; 0 runs in-process.
WORKERS ?= 2

.PHONY: install system lint format doctest check test demo claims bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

install: $(STAMP)

# System packages the tests need (idempotent; installs only what is missing).
system:
	bash scripts/system-deps.sh

# Style and types: zero findings (ruff's rules and mypy's strictness live in pyproject.toml).
# mypy takes about 25 s from a clean clone on the 2-core machine and 1-5 s with its cache;
# the cap turns a pathological slow-down into a failure instead of a stalled CI.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	timeout 180 $(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks scripts
	$(VENV)/bin/ruff format src tests benchmarks scripts

# The inner loop: lint, doctests, then every test but the slow tier (≤ 90 s on the 2-core machine).
check: lint doctest
	$(PY) -m pytest -q -m "not claims and not slow" -p no:cacheprovider -n $(WORKERS)

# The examples in docstrings run as written.
doctest: install
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules src/miaudit

test: install system lint doctest
	$(PY) -m pytest -q -m "not claims" -n $(WORKERS)

demo: install
	$(VENV)/bin/miaudit demo --out demo-results

# Every statistical and performance claim at full size; writes docs/benchmarks.md.
claims: install system
	$(PY) -m pytest -q -m claims
	$(PY) -m benchmarks run all --write docs/benchmarks.md

bench: install
	$(PY) -m benchmarks list

clean:
	rm -rf $(VENV) build dist src/*.egg-info
