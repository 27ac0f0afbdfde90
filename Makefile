# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: venv postgres java iceberg demo test test-fast bench reliability dist clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "installing python3-venv (Debian's python3 has no venv without it)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,spark]'
	touch $@

venv: $(VENV)/.installed

# The tests, the demo and the benchmark start their own throwaway PostgreSQL from the
# system's server binaries; install them when they are missing (Debian/Ubuntu).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	else echo "installing postgresql (server binaries for the throwaway test cluster)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null; fi

# tests/test_spark.py runs the Databricks dialect on a local Spark (pyspark), which needs Java;
# install a JRE when there is none (Debian/Ubuntu).
java:
	@if command -v java >/dev/null 2>&1 || [ -n "$$JAVA_HOME" ]; then :; \
	else echo "installing a Java runtime (for the local Spark engine of the tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null; fi

# tests/test_spark_writes.py executes the Databricks dialect's MERGE on Iceberg tables (Delta's
# jars are not on the package index). The Iceberg runtime there is built for Spark 3.5, so it
# gets its own interpreter; snowpark-connect-deps-iceberg 1.0.3's jar lacks its shaded Jackson
# classes (NoClassDefFoundError), hence 1.0.2.
ICEBERG_VENV ?= .venv-iceberg
$(ICEBERG_VENV)/.installed:
	$(PYTHON) -m venv $(ICEBERG_VENV)
	$(ICEBERG_VENV)/bin/python -m pip install --quiet pyspark==3.5.9 snowpark-connect-deps-iceberg==1.0.2
	touch $@

iceberg: $(ICEBERG_VENV)/.installed

# Seeds a `customers` table in a throwaway Postgres, runs `datahub-tokenize run` twice.
demo: venv postgres
	$(PY) -m datahub_tokenize_action.testing.demo

test: venv postgres java iceberg
	TOKENIZE_REQUIRE_SPARK=1 $(VENV)/bin/pytest tests -q -p no:cacheprovider

bench: venv postgres java iceberg
	$(PY) benchmarks/bench_postgres.py
	$(PY) benchmarks/bench_spark.py

# The reliability suite (also part of `make test`) at 10x its tables and write load; each case
# prints one [reliability] line with its figures (README, "Live tables").
RELIABILITY_SCALE ?= 10
reliability: venv postgres
	TOKENIZE_RELIABILITY_SCALE=$(RELIABILITY_SCALE) $(VENV)/bin/pytest tests/test_reliability.py -q -s -p no:cacheprovider

# The sdist and wheel a release would publish, checked as an index would check them.
# Install the wheel where `datahub actions` runs: pip install dist/datahub_tokenize_action-*.whl
dist: venv
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

clean:
	rm -rf $(VENV) $(ICEBERG_VENV) build dist *.egg-info .pytest_cache .hypothesis

# ---- The docker-compose stack (DataHub v1.7.0 + demo warehouse + this action); needs Docker ----
COMPOSE ?= docker compose
UP_TIMEOUT ?= 900

.PHONY: up e2e down
.env:
	sh docker/gen-env.sh

# Starts the stack and waits (at most UP_TIMEOUT s) until GMS and the warehouse are healthy.
up: .env
	$(COMPOSE) up -d --build
	@end=$$(( $$(date +%s) + $(UP_TIMEOUT) )); \
	for svc in datahub-gms warehouse; do \
	  until [ "$$($(COMPOSE) ps --format '{{.Health}}' $$svc 2>/dev/null)" = healthy ]; do \
	    [ $$(date +%s) -lt $$end ] || { echo "$$svc not healthy after $(UP_TIMEOUT) s"; $(COMPOSE) ps; exit 1; }; \
	    sleep 5; \
	  done; echo "$$svc: healthy"; \
	done

# Waits for the first tokenization, checks the table, re-tags and checks the next run changes 0 rows.
e2e: venv
	$(PY) docker/e2e.py

# Stops the stack and removes its volumes (the generated .env stays; delete it for new secrets).
down:
	$(COMPOSE) down -v

# The stock actions image's Python env (acryl-datahub[base,s3,gcs,abs] + acryl-datahub-actions[all],
# uv, Python 3.11, no constraints of ours) for the oldest and newest DataHub release we support:
# our install must change none of its packages, pass pip check and the extras' requirements,
# load the `tokenize` plugin, and the whole test suite must pass there. See .ci/image_env.py.
.PHONY: image-compat
image-compat: venv postgres
	$(PYTHON) .ci/image_env.py
