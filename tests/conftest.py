"""Shared fixtures. The real-Postgres tests start their own throwaway cluster unless
TOKENIZE_TEST_PG_URL names one; under CI=true a missing Postgres fails the run."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from .harness import PostgresHarness, throwaway_cluster

# datahub's golden-file helpers (--update-golden-files) and the Kafka / schema registry /
# GMS stand-ins of the end-to-end tests.
pytest_plugins = ["datahub.testing.pytest_hooks", "tests.support.fixtures"]


@pytest.fixture(scope="session")
def pg_server_url():
    """A Postgres server URL (no database) the tests may create databases on."""
    url = os.environ.get("TOKENIZE_TEST_PG_URL")
    if url:
        yield url
        return
    with throwaway_cluster() as cluster:
        yield cluster.server_url()


@pytest.fixture(scope="session")
def pg_database(pg_server_url):
    """(server URL without database, database name) of a database for this test session."""
    url = sa.make_url(pg_server_url)
    if url.database:  # a given URL names its own database: use it as it is
        return url.set(database=None).render_as_string(hide_password=False), url.database
    name = f"appdb_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return pg_server_url, name


@pytest.fixture
def pg(pg_database):
    harness = PostgresHarness(*pg_database)
    yield harness
    harness.close()
