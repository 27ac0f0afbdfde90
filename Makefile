# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv postgres demo test test-fast bench dist clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "installing python3-venv (Debian's python3 has no venv without it)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The tests, the demo and the benchmark start their own throwaway PostgreSQL from the
# system's server binaries; install them when they are missing (Debian/Ubuntu).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	else echo "installing postgresql (server binaries for the throwaway test cluster)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null; fi

# Seeds a `customers` table in a throwaway Postgres, runs `datahub-tokenize run` twice.
demo: venv postgres
	$(PY) -m datahub_tokenize_action.testing.demo

test: venv postgres
	$(VENV)/bin/pytest tests -q -p no:cacheprovider

bench: venv postgres
	$(PY) benchmarks/bench_postgres.py

# The sdist and wheel a release would publish, checked as an index would check them.
# Install the wheel where `datahub actions` runs: pip install dist/datahub_tokenize_action-*.whl
dist: venv
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
