"""`make demo`, the README's first command: the whole event path on one machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from datahub_tokenize_action.testing.demo import DEMO_KEY, shipped_config

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_the_demo_tokenizes_on_a_tag_event_and_a_redelivery_changes_nothing():
    proc = subprocess.run([sys.executable, "-m", "datahub_tokenize_action.testing.demo"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "real       the stock `datahub-actions` CLI with configs/tokenize.yaml, unchanged" in out
    assert "stand-in   DataHub GMS" in out and "stand-in   Kafka broker" in out
    before, after = out.split("The table before:")[1], out.split("The table after:")[1]
    assert "grace.hopper1@example.com" in before and "grace.hopper1@example.com" not in after
    assert "tok2_demo_" in after
    assert "tags in DataHub now: urn:li:tag:tokenize/done, urn:li:tag:tokenize/status:SUCCESS" in out
    assert '"rows_updated": 1000' in out and "### Tokenization: SUCCESS" in out
    assert "status SUCCESS, rows updated 0" in out and "table unchanged" in out
    metrics = out.split("Prometheus metrics of the runs")[1]
    assert 'datahub_tokenize_runs_total{dry_run="false",platform="postgres",status="SUCCESS"} 2.0' in metrics
    assert 'datahub_tokenize_rows_updated_total{platform="postgres"} 1000.0' in metrics  # the second run: 0
    assert 'datahub_tokenize_values_tokenized_total{platform="postgres"} 2858.0' in metrics
    assert 'datahub_tokenize_runs_in_progress{platform="postgres"}' not in metrics  # (0 lines are not shown)
    assert 'datahub_tokenize_run_duration_seconds_count{platform="postgres",status="SUCCESS"} 2.0' in metrics
    assert DEMO_KEY not in out + proc.stderr


def test_the_demo_names_a_missing_config_and_changes_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "datahub_tokenize_action.testing.demo", "--config",
                           str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "nope.yaml not found" in proc.stderr and proc.stdout == ""
    assert shipped_config().is_file()
