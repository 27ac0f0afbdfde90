"""`datahub-tokenize` as a user runs it: a subprocess, JSON out, exit codes, no secrets."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

PASSWORD = "Pg-Passw0rd-Secret"
KEY = "cli-hmac-key-Secret-0123456789"
YAML = """\
action:
  type: tokenize
  config:
    connections:
      - platform: postgres
        url: postgresql+psycopg2://tokenize:${PG_PASSWORD}@${PG_HOSTPORT}
    tokenizer:
      type: hmac
      key: ${TOKENIZE_HMAC_KEY}
"""


def _cli() -> list[str]:
    exe = shutil.which("datahub-tokenize", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "datahub_tokenize_action.cli"]


@pytest.fixture
def cli_env(pg, tmp_path):
    """A config file whose URL and key come from the environment, and a `tokenize` role with a password."""
    pg.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tokenize') THEN "
               f"CREATE ROLE tokenize LOGIN SUPERUSER PASSWORD '{PASSWORD}'; END IF; END $$")
    url = sa.make_url(pg.server_url)
    config = tmp_path / "tokenize.yaml"
    config.write_text(YAML)
    env = {**os.environ, "PG_PASSWORD": PASSWORD, "PG_HOSTPORT": f"{url.host}:{url.port}", "TOKENIZE_HMAC_KEY": KEY}
    return config, env


def run_cli(args, env):
    proc = subprocess.run([*_cli(), *args], env=env, capture_output=True, text=True, timeout=120)
    for secret in (PASSWORD, KEY):
        assert secret not in proc.stdout and secret not in proc.stderr
    return proc


pytestmark = pytest.mark.postgres


def test_json_output_is_one_object_with_the_result_keys_and_exit_code_zero(pg, cli_env):
    config, env = cli_env
    table = pg.create_table([("id", "int"), ("email", "text"), ("phone", "text")],
                            [(1, "a@x.com", "1"), (2, "b@x.com", None)])
    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "email,phone", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("status", "dataset", "columns", "rows_scanned", "rows_updated", "values_tokenized",
                "values_skipped", "nulls", "elapsed_s", "dry_run"):
        assert key in result
    assert (result["status"], result["rows_updated"], result["nulls"]) == ("SUCCESS", 2, {"email": 0, "phone": 1})
    again = json.loads(run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "email,phone",
                                "--json"], env).stdout)
    assert again["rows_updated"] == 0


def test_the_human_summary_and_a_dry_run(pg, cli_env):
    config, env = cli_env
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    before = pg.checksum(table)
    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "email", "--dry-run"], env)
    assert proc.returncode == 0
    assert "DRY RUN SUCCESS" in proc.stdout and "rows would update 1" in proc.stdout
    assert pg.checksum(table) == before


def test_bad_input_exits_non_zero_with_one_line_on_stderr(pg, cli_env):
    config, env = cli_env
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "emial", "--json", "-q"], env)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("datahub-tokenize: error:")
    assert "'emial'" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "FAILED"


def test_a_malformed_dataset_urn_is_a_usage_error(cli_env):
    config, env = cli_env
    proc = run_cli(["run", "-c", str(config), "--dataset", "customers", "--columns", "email", "-q"], env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("datahub-tokenize: error:") and "customers" in proc.stderr


def test_a_password_in_the_url_query_is_masked_too(cli_env):
    config, env = cli_env
    config.write_text(YAML.replace("tokenize:${PG_PASSWORD}@${PG_HOSTPORT}",
                                   "tokenize@127.0.0.1:1?password=${PG_PASSWORD}"))
    proc = run_cli(["run", "-c", str(config), "--columns", "email", "--json", "--dataset",
                    "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.t,PROD)"], env)
    assert proc.returncode == 1
    assert "password=***" in proc.stderr and "password=***" in json.loads(proc.stdout)["error"]


def test_an_unreachable_database_fails_without_printing_the_password(cli_env):
    config, env = cli_env
    env = {**env, "PG_HOSTPORT": "127.0.0.1:1"}
    proc = run_cli(["run", "-c", str(config), "--columns", "email", "--dataset",
                    "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.t,PROD)"], env)
    assert proc.returncode == 1
    assert "cannot connect" in proc.stderr and "tokenize:***@127.0.0.1:1" in proc.stderr


def test_a_config_error_exits_with_code_two(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(YAML.replace("type: hmac", "type: hmac\n      kee: 1"))
    env = {**os.environ, "PG_PASSWORD": PASSWORD, "PG_HOSTPORT": "h:1", "TOKENIZE_HMAC_KEY": KEY}
    proc = run_cli(["run", "-c", str(config), "--dataset", "urn:li:dataset:(urn:li:dataPlatform:postgres,a.b.c,PROD)",
                    "--columns", "e"], env)
    assert proc.returncode == 2
    assert "kee" in proc.stderr


YAML_WITH_DATAHUB = YAML + """\
datahub:
  server: ${DATAHUB_GMS_URL}
"""


@pytest.mark.e2e
def test_without_columns_the_cli_asks_datahub_and_writes_the_outcome_back(pg, cli_env, gms_server, tmp_path):
    from datahub_tokenize_action.testing.gms import schema_metadata

    config, env = cli_env
    config.write_text(YAML_WITH_DATAHUB)
    env = {**env, "DATAHUB_GMS_URL": gms_server.url}
    table = pg.create_table([("id", "int"), ("email", "text"), ("note", "text")], [(1, "a@x.com", "n")])
    gms_server.put_aspect(pg.urn(table), schema_metadata("t", {"id": "number", "email": "string", "note": "string"}))

    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--json"], env)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["columns"] == ["email"]
    aspects = {m.aspect_name for m in gms_server.mcps(entity_urn=pg.urn(table))}
    assert {"globalTags", "datasetProperties", "editableDatasetProperties"} <= aspects


@pytest.mark.e2e
def test_no_write_back_still_chooses_columns_through_datahub_but_writes_nothing(pg, cli_env, gms_server):
    from datahub_tokenize_action.testing.gms import schema_metadata

    config, env = cli_env
    config.write_text(YAML_WITH_DATAHUB)
    env = {**env, "DATAHUB_GMS_URL": gms_server.url}
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    gms_server.put_aspect(pg.urn(table), schema_metadata("t", {"id": "number", "email": "string"}))

    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--json", "--no-write-back"], env)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_updated"] == 1
    assert gms_server.mcps() == []


def test_when_datahub_is_down_the_table_is_tokenized_and_the_json_and_exit_code_say_what_is_missing(pg, cli_env):
    config, env = cli_env
    config.write_text(YAML + "datahub:\n  server: http://127.0.0.1:1\n  retry_max_times: 0\n  timeout_sec: 2\n")
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])

    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "email", "--json", "-q"], env)

    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert (result["status"], result["rows_updated"]) == ("SUCCESS", 1)
    assert "recording that in DataHub failed" in result["write_back_error"]
    assert proc.stderr.count("\n") == 1 and "run again" in proc.stderr and "Traceback" not in proc.stderr


AWKWARD_PASSWORD = "Zq9@secret/TAIL:%41?"


def test_a_password_with_reserved_characters_works_from_the_password_field(pg, cli_env):
    config, env = cli_env
    config.write_text(YAML.replace("tokenize:${PG_PASSWORD}@${PG_HOSTPORT}", "tokenize@${PG_HOSTPORT}")
                      .replace("    tokenizer:", "        password: ${PG_PASSWORD}\n    tokenizer:"))
    table = pg.create_table([("id", "int"), ("email", "text")], [(1, "a@x.com")])
    env = {**env, "PG_PASSWORD": AWKWARD_PASSWORD}
    proc = run_cli(["run", "-c", str(config), "--dataset", pg.urn(table), "--columns", "email", "--json", "-q"], env)
    assert proc.returncode == 0, proc.stderr
    assert "secret" not in proc.stdout + proc.stderr


def test_a_url_whose_password_holds_an_at_sign_is_refused_without_showing_any_of_it(cli_env):
    config, env = cli_env
    env = {**env, "PG_PASSWORD": AWKWARD_PASSWORD}
    proc = run_cli(["run", "-c", str(config), "--columns", "email", "--json", "--dataset",
                    "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.t,PROD)"], env)
    assert proc.returncode == 2
    assert "more than one '@'" in proc.stderr and "`password:`" in proc.stderr
    assert "secret" not in proc.stdout + proc.stderr and "TAIL" not in proc.stdout + proc.stderr


# What a new user meets first: --version, config mistakes and an unreachable DataHub, each one
# line on stderr that says where and what to do. None of these needs a database.

DATASET = "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.t,PROD)"
NO_DB_ENV = {"PG_PASSWORD": PASSWORD, "PG_HOSTPORT": "127.0.0.1:1", "TOKENIZE_HMAC_KEY": KEY}


def _run_config(tmp_path, text, *extra, env=None):
    config = tmp_path / "tokenize.yaml"
    config.write_text(text)
    started = time.monotonic()
    proc = run_cli(["run", "-c", str(config), "--dataset", DATASET, "-q", *extra],
                   {**os.environ, **NO_DB_ENV, **(env or {})})
    return config, proc, time.monotonic() - started


def _one_error_line(proc) -> str:
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("datahub-tokenize: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr[len("datahub-tokenize: error: "):].rstrip("\n")


def test_version_prints_the_package_version_and_exits_zero():
    import importlib.metadata

    proc = subprocess.run([*_cli(), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"datahub-tokenize {importlib.metadata.version('datahub-tokenize-action')}"


def test_a_yaml_syntax_error_is_one_line_naming_the_file_line_and_column(tmp_path):
    config, proc, _ = _run_config(tmp_path, YAML.replace("      type: hmac\n", "      type: hmac: x\n"), "--columns", "e")
    assert proc.returncode == 2
    assert _one_error_line(proc) == f"{config}:8:17: YAML syntax error: mapping values are not allowed here; fix the file"


def test_a_misspelt_key_is_one_line_naming_its_path_and_the_key_it_probably_meant(tmp_path):
    config, proc, _ = _run_config(tmp_path, YAML + "    run:\n      batch_sise: 5\n", "--columns", "e")
    assert proc.returncode == 2
    assert _one_error_line(proc) == f"{config}: action.config.run.batch_sise: unknown key; did you mean batch_size?"


def test_a_bad_value_in_the_datahub_section_names_its_path(tmp_path):
    _, proc, _ = _run_config(tmp_path, YAML + "datahub:\n  server: http://127.0.0.1:1\n  timeout_sec: soon\n")
    assert proc.returncode == 2
    assert _one_error_line(proc).startswith("datahub.timeout_sec: expected a valid number")


def test_the_datahub_client_gets_a_bounded_timeout_and_retries_unless_the_yaml_sets_them():
    from datahub_tokenize_action.cli import DATAHUB_DEFAULTS, _graph

    config = _graph({"server": "http://127.0.0.1:1"})._config
    assert (config.timeout_sec, config.retry_max_times) == (DATAHUB_DEFAULTS["timeout_sec"],
                                                            DATAHUB_DEFAULTS["retry_max_times"]) == (10, 2)
    config = _graph({"server": "http://127.0.0.1:1", "timeout_sec": 60, "retry_max_times": 5})._config
    assert (config.timeout_sec, config.retry_max_times) == (60, 5)


def _silent_server():
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def _answering(status):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = b'{"message": "Unauthorized"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("case", ["refused", "dns", "no answer"])
def test_an_unreachable_datahub_fails_within_the_bound_with_one_line_naming_the_server(tmp_path, case):
    extra, sock = "", None
    if case == "refused":  # the CLI's defaults: 3 attempts, 0 + 4 s of backoff
        server, expected, bound = "http://127.0.0.1:1", "refused the connection", 30
    elif case == "dns":
        server, expected, bound = "http://gms-Secret@datahub-gms.invalid:8080", "the host name datahub-gms.invalid does not resolve", 30
    else:  # the YAML's own bound: 2 attempts of 1 s
        sock, server = _silent_server()
        extra, expected, bound = "  timeout_sec: 1\n  retry_max_times: 1\n", "did not answer within 1s (2 attempts", 30
    try:
        _, proc, elapsed = _run_config(tmp_path, YAML + f"datahub:\n  server: {server}\n{extra}")
    finally:
        if sock is not None:
            sock.close()
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert elapsed < bound
    assert expected in line and "run again once DataHub answers" in line
    assert f"DataHub at {server.replace('gms-Secret@', '***@')} " in line and "Secret" not in line
    assert line.count("DataHub at ") == 1, "said once: a run that could not read DataHub does not try to write to it"
    assert "DataHubError:" not in line


@pytest.mark.parametrize("status, expected", [
    (401, "answered HTTP 401 Unauthorized: `datahub.token` is missing, wrong or expired"),
    (403, "answered HTTP 403 Forbidden: the token's user may not read or edit"),
])
def test_a_refused_token_says_so_in_one_line(tmp_path, status, expected):
    server, url = _answering(status)
    try:
        _, proc, _ = _run_config(tmp_path, YAML + f"datahub:\n  server: {url}\n  token: tok-Secret\n")
    finally:
        server.shutdown()
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert f"DataHub at {url} {expected}" in line and "Secret" not in line


@pytest.mark.parametrize("when", ["before the COMMIT", "after the COMMIT"])
def test_a_signal_tells_a_run_that_committed_from_one_that_did_not(pg, monkeypatch, when):
    # What the CLI's signal handler reads from the interrupted frames: a run whose final COMMIT
    # returned is done (its rows are tokenized); one whose COMMIT was not sent is not.
    from datahub_tokenize_action import TokenizeRequest, run_request
    from datahub_tokenize_action._warehouses import run as run_module
    from datahub_tokenize_action.cli import _Interrupts

    table = pg.create_table([("id", "int"), ("email", "text")], [(i, f"u{i}@example.com") for i in range(7)])
    commit, seen = run_module.commit, []

    def observed_commit(wh, conn, ref):
        if when == "before the COMMIT":
            seen.append(_Interrupts._committed(sys._getframe()))
        out = commit(wh, conn, ref)
        if when == "after the COMMIT":
            seen.append(_Interrupts._committed(sys._getframe()))
        return out

    monkeypatch.setattr(run_module, "commit", observed_commit)
    run_request(pg.config(), TokenizeRequest(pg.urn(table), ("email",)))
    assert seen == ([None] if when == "before the COMMIT" else [(7, None)])
