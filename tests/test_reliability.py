"""Reliability on a real Postgres with real concurrent OS processes.

1. An application process writes at a steady rate (autocommit UPDATEs of random rows,
   some changing only the letter case of an email, and INSERTs) for the whole of a run, in
   both transaction modes, for a one- and a two-column run. The run must succeed, and an
   oracle classifies every value: it must be exactly the latest plaintext the application
   committed, or exactly the token of it. A second run, without the writer, must leave a
   token of the latest plaintext everywhere. One deterministic case changes rows of a page
   after the run read it and before it wrote it.
2. SIGTERM and SIGKILL of ``datahub-tokenize run`` (a subprocess) in the middle of a run.
3. ``pg_ctl restart -m fast`` of a cluster the tests own, in the middle of a run.

Sizes and the writer's duration scale with TOKENIZE_RELIABILITY_SCALE (default 1; ``make
reliability`` runs 10). Each case prints one ``[reliability]`` line (``pytest -s`` shows it).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence

import pytest
import sqlalchemy as sa
import yaml

from datahub_tokenize_action import TokenizeRequest, parse_config
from datahub_tokenize_action._runner import run_request, tokenize_dataset
from datahub_tokenize_action._warehouses.postgres import PostgresTokenizer
from datahub_tokenize_action._warehouses import WarehouseTokenizer, loop
from datahub_tokenize_action.testing.postgres import PostgresCluster

from .harness import HMAC_KEY, throwaway_cluster

pytestmark = pytest.mark.postgres

SCALE = float(os.environ.get("TOKENIZE_RELIABILITY_SCALE", "1") or "1")
if SCALE <= 0:
    raise ValueError("TOKENIZE_RELIABILITY_SCALE must be a positive number")


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


#: Every wait in this module is bounded; a run that hangs fails the test with a message.
WAIT_S = 60 + 30 * SCALE


# ----------------------------------------------------------------------------- helpers


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def report(line: str) -> None:
    print(f"\n[reliability] {line}", flush=True)


def create_table(engine: sa.Engine, rows: int, name: str | None = None) -> str:
    """id, email, phone, note; emails of mixed case, every 101st empty, every 7th phone NULL."""
    name = name or f"rel_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id int PRIMARY KEY, email text, phone text, note text)"))
        conn.execute(sa.text(
            f"INSERT INTO {name} SELECT i, "
            "CASE WHEN i % 101 = 0 THEN '' ELSE 'User' || i || '.Name@Example.com' END, "
            "CASE WHEN i % 7 = 0 THEN NULL ELSE '+1-555-' || lpad(i::text, 7, '0') END, "
            "'note ' || i FROM generate_series(1, :n) i"), {"n": rows})
        conn.execute(sa.text(f"ANALYZE {name}"))
    return name


def read_table(engine: sa.Engine, table: str) -> dict[int, dict[str, str | None]]:
    with engine.connect() as conn:
        return {i: {"email": e, "phone": p} for i, e, p in
                conn.execute(sa.text(f"SELECT id, email, phone FROM {table}"))}


def drop_table(engine: sa.Engine, table: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def urn(database: str, table: str) -> str:
    return f"urn:li:dataset:(urn:li:dataPlatform:postgres,{database}.public.{table},PROD)"


def action_config(server_url: str, **run: Any) -> dict[str, Any]:
    return {"connections": [{"platform": "postgres", "url": server_url}],
            "tokenizer": {"type": "hmac", "key": HMAC_KEY}, "run": run}


def no_run_left(engine: sa.Engine, database: str) -> bool:
    """No backend of a run (application_name datahub-tokenize) is connected to ``database``:
    after a run was killed, the server has rolled back whatever it left open."""
    with engine.connect() as conn:
        return not conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'datahub-tokenize' "
            "AND datname = :d"), {"d": database}).scalar_one()


def count_changed(engine: sa.Engine, table: str) -> int:
    """Emails that no longer hold the plaintext ``create_table`` gave them (tokens, when only a
    run writes): SQL that knows nothing of the token format."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            f"SELECT count(*) FROM {table} WHERE email <> '' AND email <> 'User' || id || '.Name@Example.com'"
        )).scalar_one()


# ----------------------------------------------------------------------------- the oracle

OK_PLAIN = "latest plaintext (left for the next pass)"
OK_TOKEN = "token of the latest plaintext"
OK_NULL = "NULL or empty, as written"
OK_UNTOUCHED = "column not tokenized, latest value"


class Oracle:
    """What each row and column may hold, from the table's initial values and every value
    the application committed, in commit order."""

    def __init__(self, initial: dict[int, dict[str, str | None]], tokenizer: Any):
        self.tok = tokenizer
        self.latest = {i: dict(v) for i, v in initial.items()}
        self.history: dict[tuple[int, str], list[str | None]] = collections.defaultdict(list)
        self._tokens: dict[str, str] = {}

    def apply(self, writes: Iterable[Sequence[Any]]) -> None:
        """``[t, kind, id, email, phone]`` per committed write (None: column not written)."""
        for _, kind, row, email, phone in writes:
            if kind == "insert":
                assert row not in self.latest, f"the writer inserted row {row} twice"
                self.latest[row] = {"email": email, "phone": phone}
                continue
            for col, value in (("email", email), ("phone", phone)):
                if value is not None:
                    self.history[(row, col)].append(self.latest[row][col])
                    self.latest[row][col] = value

    def token(self, value: str) -> str:
        if value not in self._tokens:
            self._tokens[value] = self.tok.tokenize(value)
        return self._tokens[value]

    def _prefill(self, columns: Sequence[str]) -> None:
        todo = sorted({v[c] for v in self.latest.values() for c in columns if v[c]} - set(self._tokens))
        self._tokens.update(zip(todo, self.tok.tokenize_many(todo)))

    def classify(self, actual: dict[int, dict[str, str | None]], columns: Sequence[str],
                 ) -> tuple[collections.Counter, list[str]]:
        """(count per (column, class), a few examples of every bad value)."""
        self._prefill(columns)
        counts: collections.Counter = collections.Counter()
        bad: list[str] = []

        def wrong(what: str, detail: str) -> None:
            counts[what] += 1
            if len(bad) < 20:
                bad.append(detail)

        for row in self.latest.keys() - actual.keys():
            wrong("lost row", f"row {row} is gone")
        for row in actual.keys() - self.latest.keys():
            wrong("row the application never wrote", f"row {row}: {actual[row]}")
        for row in self.latest.keys() & actual.keys():
            for col in ("email", "phone"):
                want, got = self.latest[row][col], actual[row][col]
                if col not in columns:
                    if got == want:
                        counts[(col, OK_UNTOUCHED)] += 1
                    else:
                        wrong((col, "a column the run does not tokenize changed"), f"row {row} {col}: {got!r} != {want!r}")
                    continue
                if not want:
                    if got == want:
                        counts[(col, OK_NULL)] += 1
                    else:
                        wrong((col, "NULL or empty changed"), f"row {row} {col}: {got!r} != {want!r}")
                elif got == want:
                    counts[(col, OK_PLAIN)] += 1
                elif got == self.token(want):
                    counts[(col, OK_TOKEN)] += 1
                else:
                    older = [v for v in self.history[(row, col)] if v]
                    if any(got == self.token(v) for v in older):
                        what = "token of an older value"
                    elif got in older:
                        what = "an older plaintext"
                    elif self.tok.is_token(got):
                        what = "a token, not of the latest plaintext (of a token, or of a value never written)"
                    else:
                        what = "a value never written"
                    wrong((col, what), f"row {row} {col}: {got!r} (latest plaintext {want!r}, "
                                       f"older {older[-3:]!r})")
        return counts, bad


def summarize(counts: collections.Counter) -> str:
    return ", ".join(f"{k if isinstance(k, str) else k[0] + ': ' + k[1]} {v:,}" for k, v in sorted(counts.items(), key=str))


def assert_only(counts: collections.Counter, bad: list[str], allowed: set[str], when: str) -> None:
    unexpected = {k: v for k, v in counts.items() if (k if isinstance(k, str) else k[1]) not in allowed}
    assert not unexpected, f"{when}: {summarize(collections.Counter(unexpected))}; e.g. " + "; ".join(bad[:10])


# ----------------------------------------------------------------------------- the application writer

#: The application: one autocommit connection writing at a steady rate until a line arrives
#: on stdin; then it writes every value it committed, in commit order, to ``out`` as JSON.
#: Each write waits at most ``lock_timeout`` for a row the run holds (an UPDATE that gives up
#: committed nothing and is only counted).
WRITER_SCRIPT = r"""
import json, random, sys, threading, time
import psycopg2, psycopg2.errors

cfg = json.loads(sys.argv[1])
conn = psycopg2.connect(application_name="reliability-app-writer", **cfg["dsn"])
conn.autocommit = True
cur = conn.cursor()
cur.execute("SET lock_timeout = %s", (cfg["lock_timeout"],))
table = cfg["table"]
cur.execute(f"SELECT id, email, phone FROM {table}")
latest = {i: [e, p] for i, e, p in cur.fetchall()}
ids = sorted(latest)
next_id = max(ids) + 1
rnd = random.Random(cfg["seed"])
stop = threading.Event()

def watch():
    sys.stdin.readline()
    stop.set()

threading.Thread(target=watch, daemon=True).start()
print("ready", flush=True)
log, blocked, attempts = [], 0, 0
rate = cfg["rate"]
start = time.monotonic()
announced = False
while not stop.is_set():
    attempts += 1
    delay = start + attempts / rate - time.monotonic()
    if delay > 0:
        stop.wait(delay)
    elif delay < -0.05:  # behind (a write waited for a lock): keep the rate, no burst
        start = time.monotonic() - attempts / rate
    n = attempts
    r = rnd.random()
    if r < 0.10:
        row, email, phone = next_id, f"New{n}.Person@Example.net", f"+44-20-{n:07d}"
        sql, args, kind = f"INSERT INTO {table} (id, email, phone, note) VALUES (%s, %s, %s, 'app')", (row, email, phone), "insert"
    else:
        row = rnd.choice(ids)
        email = phone = None
        old_email = latest[row][0]
        if r < 0.45:
            email = f"W{n}.Changed{row}@Example.org"
        elif r < 0.60:  # only the letter case changes (a value the compare must not take for the old one)
            email = old_email.swapcase() if old_email and old_email.swapcase() != old_email else f"w{n}.case{row}@example.org"
        elif r < 0.80:
            email, phone = f"Both{n}.{row}@Example.org", f"+33-1-{n:08d}"
        else:
            phone = f"+49-30-{n:08d}"
        sets = [(c, v) for c, v in (("email", email), ("phone", phone)) if v is not None]
        sql = f"UPDATE {table} SET " + ", ".join(f"{c} = %s" for c, _ in sets) + " WHERE id = %s"
        args, kind = tuple(v for _, v in sets) + (row,), "update"
    try:
        cur.execute(sql, args)
    except psycopg2.errors.LockNotAvailable:
        blocked += 1
        continue
    if cur.rowcount != 1:
        raise SystemExit(f"{kind} of row {row} changed {cur.rowcount} rows")
    log.append([time.monotonic(), kind, row, email, phone])
    if kind == "insert":
        latest[row] = [email, phone]
        ids.append(row)
        next_id += 1
    else:
        if email is not None:
            latest[row][0] = email
        if phone is not None:
            latest[row][1] = phone
    if not announced and len(log) >= 20:
        print("writing", flush=True)
        announced = True
with open(cfg["out"], "w") as f:
    json.dump({"log": log, "blocked": blocked, "attempts": attempts}, f)
print("done", flush=True)
"""


def psycopg2_dsn(server_url: str, database: str) -> dict[str, Any]:
    url = sa.make_url(server_url)
    dsn = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username, "dbname": database}
    if url.password:
        dsn["password"] = url.password
    return dsn


class AppWriter:
    """The application writer as an OS process (a fresh interpreter running WRITER_SCRIPT)."""

    def __init__(self, tmp_path: Any, server_url: str, database: str, table: str, *, rate: float, seed: int):
        self.out = tmp_path / f"writes_{table}.json"
        cfg = {"dsn": psycopg2_dsn(server_url, database), "table": table, "rate": rate, "seed": seed,
               "lock_timeout": "20ms", "out": str(self.out)}
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, json.dumps(cfg)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.log: list[list[Any]] = []
        self.blocked = self.attempts = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def _state(self, word: str) -> bool:
        if self.proc.poll() is not None and word not in self.lines:
            pytest.fail(f"the application writer exited ({self.proc.returncode}) before {word!r}: "
                        f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        return word in self.lines

    def wait_writing(self) -> None:
        """Until it has committed its first writes (so the run starts under load)."""
        wait_for(lambda: self._state("writing"), 30, "the application writer's first commits")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the application writer did not stop within 30 s")
        assert self.proc.returncode == 0, self.proc.stderr.read() if self.proc.stderr else ""
        data = json.loads(self.out.read_text())
        self.log, self.blocked, self.attempts = data["log"], data["blocked"], data["attempts"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------- 1. application writers


@pytest.mark.parametrize("columns", [("email",), ("email", "phone")], ids=["one-column", "two-columns"])
@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_a_run_under_steady_application_writes_succeeds_and_leaves_only_latest_plaintext_or_its_token(
        pg, tmp_path, caplog, commit_every_batch, columns):
    rows = scaled(40_000)
    table = create_table(pg.engine, rows)
    config = pg.config(batch_size=100, commit_every_batch=commit_every_batch, progress_interval_s=3600)
    tok = config.build_tokenizer()
    request = TokenizeRequest(pg.urn(table), columns)
    initial = read_table(pg.engine, table)
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    seed = 100 + 10 * commit_every_batch + len(columns)
    writer = AppWriter(tmp_path, pg.server_url, pg.database, table, rate=1000, seed=seed)
    try:
        writer.wait_writing()
        started = time.monotonic()
        result = run_request(config, request)
        ended = time.monotonic()
        writer.stop()
    finally:
        writer.kill()
    assert result.status == "SUCCESS"
    during = sum(1 for t, *_ in writer.log if started <= t <= ended)
    run_s = ended - started
    assert during >= max(150, 250 * run_s), (
        f"only {during} application writes were committed during the {run_s:.2f} s run: it did not overlap "
        "the writer enough to show anything")
    changed = [r.getMessage() for r in caplog.records if "changed by another writer" in r.getMessage()]
    assert len(changed) == 1, "the run reports the rows another writer changed after it read them"
    left = int(re.match(r".*?: (\d+) row\(s\) were changed", changed[0]).group(1))

    oracle = Oracle(initial, tok)
    oracle.apply(writer.log)
    counts, bad = oracle.classify(read_table(pg.engine, table), columns)
    assert_only(counts, bad, {OK_PLAIN, OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "after the run under writes")
    plain_left = sum(v for k, v in counts.items() if k[1] == OK_PLAIN)

    again = run_request(config, request)  # no writer now
    counts2, bad2 = oracle.classify(read_table(pg.engine, table), columns)
    assert_only(counts2, bad2, {OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "after the second run, without writes")
    assert sum(again.values_tokenized.values()) == plain_left
    report(f"writers seed {seed} {'commit-every-batch' if commit_every_batch else 'single-transaction'} "
           f"{'+'.join(columns)}: {rows:,} rows, run {run_s:.2f}s, {during:,} app writes committed during it "
           f"({during / run_s:.0f}/s; {writer.blocked} gave up on a row lock), {len(writer.log):,} in all; "
           f"run: {result.rows_updated:,} rows updated, {left:,} reported changed by another writer; "
           f"oracle: {summarize(counts)}; second run tokenized {sum(again.values_tokenized.values()):,} values")
    drop_table(pg.engine, table)


@pytest.mark.parametrize("columns", [("email",), ("email", "phone")], ids=["one-column", "two-columns"])
@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_rows_changed_after_the_run_read_them_and_before_it_wrote_them_keep_the_new_plaintext(
        pg, monkeypatch, caplog, commit_every_batch, columns):
    """Deterministic: after the first and the third page are read (with pipelined reads the
    writer thread may be applying earlier batches by then), another connection changes
    rows of that very page (read, not yet written, so not locked by the run)."""
    rows, batch = 5_000, 500
    table = create_table(pg.engine, rows)
    config = pg.config(batch_size=batch, commit_every_batch=commit_every_batch, progress_interval_s=3600)
    tok = config.build_tokenizer()
    initial = read_table(pg.engine, table)
    expected = {i: dict(v) for i, v in initial.items()}
    changed_rows: set[int] = set()
    app = sa.create_engine(sa.make_url(pg.server_url).set(database=pg.database), isolation_level="AUTOCOMMIT",
                           poolclass=sa.pool.NullPool)
    original = loop.tokenize_batch
    calls: list[int] = []

    def tokenize_batch(wh, target, page, nkey, dry_run, counts):
        calls.append(len(page))
        if len(calls) in (1, 3):
            ids = [int(r[0]) for r in page]  # the key as read (text)
            assert len(ids) == batch and ids == sorted(ids)
            picks = ids[5::len(ids) // 6][:6]
            # new email, email case only, both, both, phone only, email case only (phone kept)
            plan = [("email", "new"), ("email", "case"), ("both", "new"), ("both", "new"), ("phone", "new"),
                    ("email", "case")]
            with app.connect() as c:
                c.execute(sa.text("SET lock_timeout = '5s'"))  # a mistake fails, it does not hang
                for row, (what, how) in zip(picks, plan):
                    new = dict(expected[row])
                    if what in ("email", "both"):
                        new["email"] = (initial[row]["email"].swapcase() if how == "case" and initial[row]["email"]
                                        else f"Hook.{row}@Example.org")
                    if what in ("phone", "both"):
                        new["phone"] = f"+1-999-{row:07d}"
                    c.execute(sa.text(f"UPDATE {table} SET email = :e, phone = :p WHERE id = :i"),
                              {"e": new["email"], "p": new["phone"], "i": row})
                    expected[row] = new
                    if any(new[col] != initial[row][col] for col in columns):
                        changed_rows.add(row)
        return original(wh, target, page, nkey, dry_run, counts)

    monkeypatch.setattr(loop, "tokenize_batch", tokenize_batch)
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    try:
        result = run_request(config, TokenizeRequest(pg.urn(table), columns))
    finally:
        app.dispose()
    assert len(calls) >= 3
    assert result.status == "SUCCESS"
    assert len(changed_rows) == (10 if columns == ("email",) else 12)
    actual = read_table(pg.engine, table)
    for row in sorted(set(expected) | set(actual)):
        for col in ("email", "phone"):
            want = expected[row][col]
            if col in columns and want and expected[row][col] == initial[row][col]:
                want = tok.tokenize(want)  # unchanged by the application: tokenized
            assert actual[row][col] == want, (row, col, actual[row][col], expected[row][col])
    warnings = [r.getMessage() for r in caplog.records if "changed by another writer" in r.getMessage()]
    assert warnings == [f"{pg.database}.public.{table}: {len(changed_rows)} row(s) were changed by another writer "
                        "after they were read, and were left as it wrote them (counted as updated); run again to "
                        "tokenize any plaintext it wrote"]
    assert result.rows_updated == sum(1 for v in initial.values() if any(v[c] for c in columns))
    monkeypatch.setattr(loop, "tokenize_batch", original)
    again = run_request(config, TokenizeRequest(pg.urn(table), columns))
    left = sum(1 for row in changed_rows for col in columns if expected[row][col] != initial[row][col])
    assert sum(again.values_tokenized.values()) == left
    assert read_table(pg.engine, table) == {
        row: {c: tok.tokenize(v) if c in columns and v else v for c, v in values.items()}
        for row, values in expected.items()}
    report(f"deterministic overlap {'commit-every-batch' if commit_every_batch else 'single-transaction'} "
           f"{'+'.join(columns)}: {rows:,} rows, {len(changed_rows)} rows changed between read and write, "
           f"warning: {len(changed_rows)} row(s); second run tokenized {left} values")
    drop_table(pg.engine, table)


# ----------------------------------------------------------------------------- the CLI as a subprocess


def cli_command() -> list[str]:
    exe = shutil.which("datahub-tokenize", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "datahub_tokenize_action.cli"]


PROGRESS = re.compile(r": ([\d,]+) / ~([\d,]+) rows")
RESULT_KEYS = {"status", "dataset", "table", "columns", "rows_scanned", "rows_updated", "values_tokenized",
               "values_skipped", "nulls", "empty_strings", "elapsed_s", "dry_run", "tokenizer", "key_id",
               "run_id", "started_at", "ended_at", "error", "error_type"}


class CliRun:
    """``datahub-tokenize run`` in its own process group, its output read as it comes."""

    def __init__(self, args: Sequence[str], prefix: Sequence[str] | None = None, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([*(prefix or cli_command()), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env={**os.environ, **(env or {})})
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(s, l), daemon=True)
                         for s, l in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def rows_read(self) -> int:
        """Rows the loop has read so far, from its last progress line (0 before the loop)."""
        for line in reversed(self.err):
            m = PROGRESS.search(line)
            if m:
                return int(m.group(1).replace(",", ""))
        return 0

    def alive(self, what: str) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the CLI exited ({self.proc.returncode}) before {what}; stderr: {self.err[-5:]}")
        return True

    def wait_rows(self, n: int) -> None:
        wait_for(lambda: self.alive(f"{n:,} rows were read") and self.rows_read() >= n, WAIT_S,
                 f"the run to read {n:,} rows (last stderr: {self.err[-1:]})")

    def signal(self, signum: int) -> float:
        self.alive(f"it could be sent {signal.Signals(signum).name}")
        self.proc.send_signal(signum)
        return time.monotonic()

    def finish(self, timeout: float = WAIT_S) -> tuple[int, list[str], list[str]]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the CLI did not exit within {timeout:.0f}s (a hang); stderr: {self.err[-5:]}")
        for t in self._threads:
            t.join(timeout=10)
        return self.proc.returncode, self.out, self.err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def write_config(tmp_path: Any, server_url: str, **run: Any) -> str:
    path = tmp_path / f"tokenize_{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"action": {"type": "tokenize", "config": action_config(server_url, **run)}}))
    return str(path)


def run_args(config: str, dataset: str, *extra: str) -> list[str]:
    return ["run", "-c", config, "--dataset", dataset, "--columns", "email", "--no-write-back", "--json", *extra]


def one_json_object(out: list[str]) -> dict[str, Any]:
    assert len(out) == 1, f"stdout must be exactly one JSON object, got {len(out)} lines: {out[:3]}"
    result = json.loads(out[0])
    assert RESULT_KEYS <= set(result), RESULT_KEYS - set(result)
    return result


def rerun_completes(config: str, dataset: str, engine: sa.Engine, table: str, originals: dict[int, Any],
                    tok: Any, already: int) -> dict[str, Any]:
    """A run after the interruption: SUCCESS, each value tokenized exactly once (the token of its
    original plaintext, never a token of a token)."""
    rerun = CliRun(run_args(config, dataset, "-q"))
    try:
        code, out, err = rerun.finish()
    finally:
        rerun.kill()
    assert code == 0 and err == [], err
    result = one_json_object(out)
    oracle = Oracle(originals, tok)
    counts, bad = oracle.classify(read_table(engine, table), ("email",))
    assert_only(counts, bad, {OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "after the rerun")
    assert (result["status"], result["values_skipped"], result["values_tokenized"]) == (
        "SUCCESS", {"email": already}, {"email": counts[("email", OK_TOKEN)] - already})
    return result


INTERRUPTED = "dataset {urn}: interrupted by SIGTERM; "


def interrupted_message(urn: str, commit_every_batch: bool, committed: int = 0) -> str:
    """The one line a SIGTERM mid-run gives: the state the table is in (with
    commit_every_batch, what its committed batches hold: one column, so rows = values)."""
    if commit_every_batch:
        return (INTERRUPTED.format(urn=urn) + f"batches committed before it ({committed:,} row(s) updated, "
                f"{committed:,} value(s) tokenized) stay tokenized, the other rows still hold plaintext "
                "(run.commit_every_batch); run again to finish (values already tokens are skipped)")
    return (INTERRUPTED.format(urn=urn)
            + "nothing was changed (the run's transaction was rolled back); run again to tokenize it")


def start_interrupted_run(pg, tmp_path, commit_every_batch: bool, rows: int, *, quiet: bool,
                          prefix: Sequence[str] | None = None, env: dict[str, str] | None = None):
    table = create_table(pg.engine, rows)
    config = write_config(tmp_path, pg.server_url, batch_size=500, commit_every_batch=commit_every_batch,
                          progress_interval_s=0.05)
    dataset = pg.urn(table)
    cli = CliRun(run_args(config, dataset, *(["-q"] if quiet else [])), prefix=prefix, env=env)
    return table, config, dataset, cli


def wait_until_mid_run(pg, cli: CliRun, table: str, rows: int, commit_every_batch: bool) -> str:
    """Until the run is well inside its row loop: with commit_every_batch, until a tenth of the
    rows are committed tokens (read from the table); else until a fifth of the rows were read
    (its progress lines)."""
    if commit_every_batch:
        wait_for(lambda: cli.alive("a tenth of the rows were committed") and count_changed(pg.engine, table) >= rows // 10,
                 WAIT_S, "a tenth of the rows to be committed", interval=0.02)
        return "committed tokens"
    cli.wait_rows(rows // 5)
    return "rows read"


@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_sigterm_stops_the_cli_cleanly_mid_run_and_a_rerun_completes_the_table(pg, tmp_path, commit_every_batch):
    rows = scaled(200_000)
    # Single transaction: progress lines on stderr say when the loop is under way. With
    # commit_every_batch, -q: the table says it, and the error is the only line on stderr.
    table, config, dataset, cli = start_interrupted_run(pg, tmp_path, commit_every_batch, rows,
                                                        quiet=commit_every_batch)
    originals = read_table(pg.engine, table)
    tok = parse_config(action_config(pg.server_url)).build_tokenizer()
    try:
        wait_until_mid_run(pg, cli, table, rows, commit_every_batch)
        sent = cli.signal(signal.SIGTERM)
        code, out, err = cli.finish()
        stopped_s = time.monotonic() - sent
    finally:
        cli.kill()
    assert code == 143, (code, err[-5:])
    result = one_json_object(out)
    assert (result["status"], result["error_type"]) == ("FAILED", "RunInterrupted")
    wait_for(lambda: no_run_left(pg.engine, pg.database), WAIT_S, "the run's backends to end")
    tokens = count_changed(pg.engine, table)
    message = interrupted_message(dataset, commit_every_batch, tokens)
    assert result["error"] == message
    # What the committed batches hold, in the result too (README: Transactions).
    assert (result["rows_updated"], result["values_tokenized"]) == (
        (tokens, {"email": tokens}) if commit_every_batch else (0, {}))
    assert err[-1] == f"datahub-tokenize: error: {message}"
    assert [line for line in err if line.startswith("datahub-tokenize:") or "Traceback" in line] == [err[-1]]
    if commit_every_batch:
        assert err == [err[-1]], "with -q the error is the only line on stderr"
    counts, bad = Oracle(originals, tok).classify(read_table(pg.engine, table), ("email",))
    allowed = {OK_PLAIN, OK_NULL, OK_UNTOUCHED} | ({OK_TOKEN} if commit_every_batch else set())
    assert_only(counts, bad, allowed, "after SIGTERM")
    committed = counts[("email", OK_TOKEN)]
    if commit_every_batch:
        assert committed >= rows // 10 and committed % 500 == 0, "whole committed batches"
    else:
        assert result["rows_updated"] == 0 and committed == 0
    again = rerun_completes(config, dataset, pg.engine, table, originals, tok, committed)
    report(f"SIGTERM {'commit-every-batch' if commit_every_batch else 'single-transaction'}: {rows:,} rows, "
           f"exit {code} {stopped_s:.2f}s after the signal, {committed:,} values left tokenized (result says "
           f"rows_updated {result['rows_updated']:,}); oracle: {summarize(counts)}; rerun tokenized "
           f"{again['values_tokenized']['email']:,} in {again['elapsed_s']:.2f}s")
    drop_table(pg.engine, table)


#: Runs the CLI with the loop's second page read held until SIGTERM comes: the writer thread
#: has committed the first batch and waits, idle, outside any transaction.
HELD_SECOND_PAGE = r"""
import sys, time
from datahub_tokenize_action import cli
from datahub_tokenize_action._warehouses import loop
fetch = loop.fetch
calls = []

def held(conn, stmt):
    calls.append(1)
    if len(calls) == 2:
        time.sleep(60)  # SIGTERM comes meanwhile
    return fetch(conn, stmt)

loop.fetch = held
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_between_batches_of_a_commit_every_batch_run_says_the_rest_still_holds_plaintext(pg, tmp_path):
    rows = 20_000
    table, config, dataset, cli = start_interrupted_run(pg, tmp_path, True, rows, quiet=True,
                                                        prefix=[sys.executable, "-c", HELD_SECOND_PAGE])
    try:
        wait_for(lambda: cli.alive("the first batch committed") and count_changed(pg.engine, table) == 500,
                 WAIT_S, "the first batch to be committed", interval=0.02)
        with pg.engine.connect() as conn:  # the run's connection, idle between its transactions
            wait_for(lambda: conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'datahub-tokenize' "
                "AND datname = :d AND state = 'idle'"), {"d": pg.database}).scalar_one(), WAIT_S,
                "the run's connection to be idle")
        cli.signal(signal.SIGTERM)
        code, out, err = cli.finish()
    finally:
        cli.kill()
    tokens = count_changed(pg.engine, table)
    drop_table(pg.engine, table)
    assert (code, tokens) == (143, 500)
    assert err == [f"datahub-tokenize: error: {interrupted_message(dataset, True, 500)}"]
    result = one_json_object(out)
    assert (result["rows_updated"], result["values_tokenized"]) == (500, {"email": 500})


@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_sigkill_mid_run_leaves_plaintext_or_exact_tokens_and_a_rerun_completes_the_table(pg, tmp_path,
                                                                                          commit_every_batch):
    rows = scaled(200_000)
    table, config, dataset, cli = start_interrupted_run(pg, tmp_path, commit_every_batch, rows, quiet=False)
    originals = read_table(pg.engine, table)
    tok = parse_config(action_config(pg.server_url)).build_tokenizer()
    try:
        wait_until_mid_run(pg, cli, table, rows, commit_every_batch)
        cli.signal(signal.SIGKILL)
        code, _, _ = cli.finish()
    finally:
        cli.kill()
    assert code == -signal.SIGKILL
    # The server ends the run's sessions (rolling back what they left open) once it notices.
    started = time.monotonic()
    wait_for(lambda: no_run_left(pg.engine, pg.database), WAIT_S, "the killed run's backends to end")
    gone_s = time.monotonic() - started
    counts, bad = Oracle(originals, tok).classify(read_table(pg.engine, table), ("email",))
    allowed = {OK_PLAIN, OK_NULL, OK_UNTOUCHED} | ({OK_TOKEN} if commit_every_batch else set())
    assert_only(counts, bad, allowed, "after SIGKILL")
    committed = counts[("email", OK_TOKEN)]
    if commit_every_batch:
        assert committed >= rows // 10 and committed % 500 == 0, "whole committed batches"
    again = rerun_completes(config, dataset, pg.engine, table, originals, tok, committed)
    report(f"SIGKILL {'commit-every-batch' if commit_every_batch else 'single-transaction'}: {rows:,} rows, "
           f"backends gone {gone_s:.2f}s after, {committed:,} values left tokenized; oracle: {summarize(counts)}; "
           f"rerun tokenized {again['values_tokenized']['email']:,} in {again['elapsed_s']:.2f}s")
    drop_table(pg.engine, table)


# ----------------------------------------------------------------------------- 3. a server restart


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster only these tests use (and restart): the session's shared one stays untouched."""
    with throwaway_cluster() as cluster:
        yield cluster


def restart(cluster: PostgresCluster) -> None:
    """``pg_ctl restart -m fast`` with the options ``start()`` used (same port and socket)."""
    opts = [f"-p {cluster.port}", f"-k {cluster.base}", "-c listen_addresses=127.0.0.1",
            *(f"-c {s}" for s in cluster.settings)]
    cluster._run("pg_ctl", "-D", cluster.data, "-l", os.path.join(cluster.base, "server.log"), "-m", "fast",
                 "-w", "-t", "60", "-o", " ".join(opts), "restart")


@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_a_server_restart_mid_run_fails_it_clearly_and_a_rerun_completes_the_table(own_cluster, tmp_path,
                                                                                   commit_every_batch):
    database = f"restart_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(own_cluster.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    engine = sa.create_engine(own_cluster.url(database), poolclass=sa.pool.NullPool)
    rows = scaled(200_000)
    table = create_table(engine, rows)
    originals = read_table(engine, table)
    tok = parse_config(action_config(own_cluster.server_url())).build_tokenizer()
    config = write_config(tmp_path, own_cluster.server_url(), batch_size=500, commit_every_batch=commit_every_batch,
                          progress_interval_s=0.05)
    dataset = urn(database, table)
    # With commit_every_batch, -q: the table says how far the run is, and the one error line
    # is all a dropped connection may print (README: the CLI). Else progress lines say it.
    cli = CliRun(run_args(config, dataset, *(["-q"] if commit_every_batch else [])))
    try:
        if commit_every_batch:
            wait_for(lambda: cli.alive("a tenth was committed") and count_changed(engine, table) >= rows // 10,
                     WAIT_S, "a tenth of the rows to be committed", interval=0.02)
        else:
            cli.wait_rows(rows // 5)
        cli.alive("the restart")
        started = time.monotonic()
        restart(own_cluster)
        restart_s = time.monotonic() - started
        code, out, err = cli.finish()
        failed_s = time.monotonic() - started
    finally:
        cli.kill()
    assert code == 1, (code, err[-5:])
    result = one_json_object(out)
    assert result["status"] == "FAILED" and result["error_type"] == "WarehouseWriteError", result
    assert result["error"].startswith(f"dataset {dataset}: the warehouse failed during the run: "), result["error"]
    assert err[-1] == f"datahub-tokenize: error: {result['error']}"
    if commit_every_batch:
        assert err == [err[-1]], "with -q the error is the only line on stderr"
    else:
        noise = [line for line in err[:-1] if " INFO " not in line]
        assert noise == [], "no traceback or library error besides the one error line: " + "\n".join(err)
    counts, bad = Oracle(originals, tok).classify(read_table(engine, table), ("email",))
    allowed = {OK_PLAIN, OK_NULL, OK_UNTOUCHED} | ({OK_TOKEN} if commit_every_batch else set())
    assert_only(counts, bad, allowed, "after the restart")
    committed = counts[("email", OK_TOKEN)]
    again = rerun_completes(config, dataset, engine, table, originals, tok, committed)
    report(f"restart {'commit-every-batch' if commit_every_batch else 'single-transaction'}: {rows:,} rows, "
           f"pg_ctl restart {restart_s:.2f}s, CLI exit {code} {failed_s:.2f}s after the restart began: "
           f"{result['error'].split(': ', 1)[1][:160]!r}; {committed:,} values left tokenized; oracle: "
           f"{summarize(counts)}; rerun tokenized {again['values_tokenized']['email']:,}")
    engine.dispose()
    admin.dispose()


# ----------------------------------------------------------------------------- 4. a connection lost in COMMIT


class TcpProxy:
    """127.0.0.1:<port> → the cluster. ``cut()`` closes the client side of every connection
    and keeps the server side open: what the server sees of a network partition (its
    session stays, as do its transaction and any wait of its COMMIT)."""

    def __init__(self, target_port: int):
        import socket

        self._socket = socket
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients: list[Any] = []
        self.servers: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._socket.create_connection(("127.0.0.1", self.target_port))
            self.clients.append(client)
            self.servers.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # cut: leave the other side as it is

    def cut(self) -> None:
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(self._socket.SHUT_RDWR)
            client.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()
        for server in self.servers:
            server.close()


@contextlib.contextmanager
def commits_held_by_an_unreachable_standby(cluster: PostgresCluster, database: str) -> Iterator[Callable[[], None]]:
    """Every COMMIT of a session of ``database`` that wrote waits for a synchronous standby
    that never connects (the cluster's own sessions use synchronous_commit=off). Yields
    ``release()``: the standby requirement is removed (commits still waiting complete); the
    block's end calls it too."""
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def setting() -> str:
        with admin.connect() as conn:
            return conn.execute(sa.text("SHOW synchronous_standby_names")).scalar_one()

    def configure(value: str | None) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER SYSTEM SET synchronous_standby_names = '{value}'" if value
                                 else "ALTER SYSTEM RESET synchronous_standby_names"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
        wait_for(lambda: setting() == (value or ""), 30, "the server to reload its config")

    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {database} SET synchronous_commit = on"))
    configure("tokenize_standby_never_connects")
    try:
        yield lambda: configure(None)
    finally:
        configure(None)
        admin.dispose()


def backend_state(engine: sa.Engine, pid: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT state FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()


def commit_waiting_for_the_standby(engine: sa.Engine, database: str) -> int | None:
    """The pid of the run's session whose COMMIT waits for the synchronous standby."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'datahub-tokenize' AND datname = :d "
            "AND wait_event = 'SyncRep'"), {"d": database}).scalar()


@pytest.fixture
def commit_database(own_cluster):
    """A database of the own cluster, an engine whose sessions never wait for a standby,
    and a table of 20,000 rows."""
    database = f"commit_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(own_cluster.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    engine = sa.create_engine(own_cluster.url(database), poolclass=sa.pool.NullPool,
                              connect_args={"options": "-c synchronous_commit=local"})
    table = create_table(engine, scaled(20_000))
    yield database, engine, table
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {database} WITH (FORCE)"))
    admin.dispose()


def run_in_thread(config: Any, request: TokenizeRequest) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = tokenize_dataset(config, request).result  # a failure: a FAILED result
        except BaseException as e:  # a defect
            out["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def run_result(out: dict[str, Any]) -> Any:
    if "error" in out:
        raise AssertionError("the run raised instead of returning a FAILED result") from out["error"]
    return out["result"]


@pytest.mark.parametrize("commit_every_batch", [False, True], ids=["single-transaction", "commit-every-batch"])
def test_a_commit_whose_connection_is_lost_is_resolved_on_a_new_connection(own_cluster, commit_database, caplog,
                                                                          commit_every_batch):
    """The COMMIT waits for a synchronous standby; the run's backend is terminated while it
    waits (the server has committed locally). The run asks the server on a new connection
    and reports what it says: committed."""
    database, engine, table = commit_database
    originals = read_table(engine, table)
    config = parse_config(action_config(own_cluster.server_url(), batch_size=500,
                                        commit_every_batch=commit_every_batch, progress_interval_s=3600))
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    with commits_held_by_an_unreachable_standby(own_cluster, database) as release:
        thread, out = run_in_thread(config, TokenizeRequest(urn(database, table), ("email",)))
        pid = wait_for(lambda: commit_waiting_for_the_standby(engine, database), WAIT_S,
                       "the run's COMMIT to wait for the standby")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        if commit_every_batch:
            # The session still has its staging table (kept across the batches' commits); the
            # exiting backend drops it in a transaction of its own, whose commit waits for the
            # standby too, and the client hears nothing until it exits. Let the standby "come
            # back" once the backend is exiting (its own commit is local and final by then).
            wait_for(lambda: backend_state(engine, pid) in ("idle", None), WAIT_S, "the backend to be exiting")
            release()
        thread.join(WAIT_S)
        assert not thread.is_alive(), "the run did not end"
    result = run_result(out)
    resolved = [r.getMessage() for r in caplog.records if "asked on a new connection" in r.getMessage()]
    assert len(resolved) == 1 and "committed: the writes are in the table" in resolved[0], resolved
    counts, bad = Oracle(originals, config.build_tokenizer()).classify(read_table(engine, table), ("email",))
    tokens = counts[("email", OK_TOKEN)]
    if commit_every_batch:
        # The first batch's COMMIT was the one held and resolved: it counts as committed; the
        # next batch finds the connection gone and the run fails, reporting that batch.
        assert_only(counts, bad, {OK_PLAIN, OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "after the lost commit")
        assert (result.status, result.error_type) == ("FAILED", "WarehouseWriteError"), result.error
        assert tokens == 500 and (result.rows_updated, result.values_tokenized) == (500, {"email": 500})
        assert "batches committed before the failure stay tokenized (500 row(s) updated" in result.error
    else:
        assert_only(counts, bad, {OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "after the lost commit")
        assert result.status == "SUCCESS", result.error
        assert result.rows_updated == result.values_tokenized["email"] == tokens
    report(f"COMMIT lost (backend terminated in SyncRep) {'commit-every-batch' if commit_every_batch else 'single-transaction'}: "
           f"{result.status}, {tokens:,} tokens in the table, result says rows_updated {result.rows_updated:,}; "
           f"{resolved[0].split(': ', 1)[1][:120]!r}")


def test_a_commit_lost_in_a_network_partition_is_reported_unknown_and_the_rerun_establishes_it(
        own_cluster, commit_database, monkeypatch):
    """The client's side of the connection is cut while its COMMIT waits for the standby;
    the server's session stays, still waiting: asked on a new connection, the server says
    "in progress". The run reports the outcome unknown (never "rolled back"); once the
    standby question is settled (here: the setting removed, so the commit completes) the
    next run finds every value a token and changes nothing."""
    database, engine, table = commit_database
    originals = read_table(engine, table)
    proxy = TcpProxy(own_cluster.port)
    monkeypatch.setattr(WarehouseTokenizer, "COMMIT_OUTCOME_WAIT_S", 1.0)
    server_url = f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}"
    config = parse_config(action_config(server_url, batch_size=500, progress_interval_s=3600))
    request = TokenizeRequest(urn(database, table), ("email",))
    try:
        with commits_held_by_an_unreachable_standby(own_cluster, database):
            thread, out = run_in_thread(config, request)
            wait_for(lambda: commit_waiting_for_the_standby(engine, database), WAIT_S,
                     "the run's COMMIT to wait for the standby")
            proxy.cut()
            thread.join(WAIT_S)
            assert not thread.is_alive(), "the run did not end"
            result = run_result(out)
            assert (result.status, result.error_type) == ("FAILED", "CommitOutcomeUnknownError"), result.error
            assert "whether the server committed is unknown (the server still reports it in progress" in result.error
            assert "rolled back" not in result.error and result.rows_updated == 0
            # Still waiting: nothing of the run is visible yet.
            assert count_changed(engine, table) == 0
    finally:
        proxy.close()
    wait_for(lambda: not commit_waiting_for_the_standby(engine, database), WAIT_S, "the held commit to complete")
    tok = config.build_tokenizer()
    counts, bad = Oracle(originals, tok).classify(read_table(engine, table), ("email",))
    assert_only(counts, bad, {OK_TOKEN, OK_NULL, OK_UNTOUCHED}, "once the held commit completed")
    direct = parse_config(action_config(own_cluster.server_url(), batch_size=500, progress_interval_s=3600))
    again = run_request(direct, request)
    assert (again.status, again.rows_updated, again.values_skipped) == (
        "SUCCESS", 0, {"email": counts[("email", OK_TOKEN)]})
    report(f"COMMIT lost (network partition, session kept waiting): {result.error_type}; once it completed the "
           f"rerun found {again.values_skipped['email']:,} tokens and changed {again.rows_updated} rows")


def test_a_commit_the_server_refuses_is_reported_rolled_back(pg, caplog, monkeypatch):
    """A deferred constraint trigger fails at COMMIT: the connection stays, the server
    aborted the transaction, and asking it (a new connection) says so: "rolled back"."""
    table = create_table(pg.engine, 2_000)
    originals = read_table(pg.engine, table)
    pg.execute(f"""
        CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
        CREATE CONSTRAINT TRIGGER {table}_at_commit AFTER UPDATE ON {table}
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_refuse();""")
    caplog.set_level(logging.WARNING, logger="datahub_tokenize_action")
    asked: list[str | None] = []
    status = PostgresTokenizer.transaction_status

    def spy(self, conn, xid):
        asked.append(status(self, conn, xid))
        return asked[-1]

    monkeypatch.setattr(PostgresTokenizer, "transaction_status", spy)
    outcome = tokenize_dataset(pg.config(batch_size=500), TokenizeRequest(pg.urn(table), ("email",)))
    result = outcome.result
    assert asked == ["aborted"], "the server was asked, and said aborted"
    assert (result.status, result.error_type) == ("FAILED", "WarehouseWriteError")
    assert "refused at commit" in result.error and result.error.endswith(
        "nothing was changed (the run's transaction was rolled back)"), result.error
    assert not [r for r in caplog.records if "asked on a new connection" in r.getMessage()]
    assert read_table(pg.engine, table) == originals
    drop_table(pg.engine, table)
