"""``datahub-tokenize``: run the same flow as the action, by hand."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from types import FrameType
from typing import Any, Iterator, Sequence

from pydantic import ValidationError

from ._config import load_pipeline_file, validation_problems
from . import _runner
from ._exceptions import ConfigError, DataHubError, InvalidDatasetError, RunInterrupted, TokenizeError, first_line
from ._request import TokenizeRequest
from ._result import TokenizeResult, committed_text
from ._runner import failed_result, tokenize_dataset
from ._warehouses.run import execute_run

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: A run stopped by a signal exits with 128 + the signal's number, as shells report it:
#: 143 for SIGTERM (Kubernetes, ``docker stop``), 130 for SIGINT (Ctrl-C).
EXIT_SIGNAL_BASE = 128

#: What the CLI gives DataHub's client when the YAML's `datahub:` section sets neither key.
#: The client's own defaults (30 s per attempt, 4 retries with 0+4+8+16 s of backoff) let an
#: unreachable server hold the CLI for 28 s (refused) to ~3 min (no answer) per request.
#: With these, one request to a server that never answers gives up after 3 x 10 s + 4 s of
#: backoff, and the first unreachable request ends all later ones at once.
DATAHUB_DEFAULTS = {"timeout_sec": 10.0, "retry_max_times": 2}

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datahub-tokenize", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="tokenize the PII columns of one dataset")
    run.add_argument("-c", "--config", required=True, help="the pipeline YAML (its action.config is read)")
    run.add_argument("--dataset", required=True, help="dataset URN, e.g. "
                     "urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)")
    run.add_argument("--columns", help="comma-separated columns to tokenize (default: chosen through DataHub, "
                     "as the action does; needs the YAML's `datahub:` section)")
    run.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    run.add_argument("--no-write-back", action="store_true",
                     help="do not record the outcome in DataHub (tags, run record, summary)")
    run.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    run.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def _summary(r: TokenizeResult) -> str:
    if r.status != "SUCCESS":
        return f"FAILED {r.dataset}: {r.error}"
    verb = "would update" if r.dry_run else "updated"
    lines = [
        f"{'DRY RUN ' if r.dry_run else ''}SUCCESS {r.table or r.dataset}",
        f"  rows scanned {r.rows_scanned:,}, rows {verb} {r.rows_updated:,}, in {r.elapsed_s:.2f}s",
    ]
    for c in r.columns:
        lines.append(
            f"  {c}: {'to tokenize' if r.dry_run else 'tokenized'} {r.values_tokenized.get(c, 0):,}, "
            f"already tokens {r.values_skipped.get(c, 0):,}"
            + (f" ({r.tokens_not_configured[c]:,} not made by this configuration)"
               if r.tokens_not_configured.get(c) else "")
            + f", nulls {r.nulls.get(c, 0):,}, "
            f"empty {r.empty_strings.get(c, 0):,}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_no_tracebacks)
    # The DataHub client's retries log each attempt with the request's URL (query included);
    # the one error line says how many attempts failed and why.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    columns = tuple(c.strip() for c in args.columns.split(",") if c.strip()) if args.columns else None
    request = TokenizeRequest(args.dataset, columns)
    stop = _Interrupts(request, json_output=args.json, dry_run=args.dry_run)
    try:
        return _run(args, request, stop)
    finally:
        stop.restore()


def _run(args: argparse.Namespace, request: TokenizeRequest, stop: "_Interrupts") -> int:
    columns = request.columns
    try:
        with stop:
            pipeline = load_pipeline_file(args.config)
            stop.commit_every_batch = pipeline.config.run.commit_every_batch
            graph = _graph(pipeline.datahub) if pipeline.datahub and (not args.no_write_back or not columns) else None
            outcome = tokenize_dataset(pipeline.config, request, graph=graph, dry_run=args.dry_run,
                                       write_back=not args.no_write_back)
    except RunInterrupted as e:
        return stop.report(e)
    except Exception as e:  # the last stop: one line (and one JSON object), never a bare traceback
        if stop.interrupted is not None:  # the cleanup after the signal failed too: the signal is the news
            return stop.report(stop.interrupted)
        if not isinstance(e, TokenizeError):
            # Only at debug level: a driver's message can carry SQL parameters (plaintext).
            logger.debug("unexpected error", exc_info=True)
        failed = failed_result(request, e, dry_run=args.dry_run)  # its error is the one line to show
        if args.json:
            print(json.dumps(failed.to_dict()))
        print(f"datahub-tokenize: error: {failed.error}", file=sys.stderr)
        return _exit_code(e)
    if stop.interrupted is not None:  # the signal's exception was lost in a cleanup that failed
        return stop.report(stop.interrupted)
    result = outcome.result.to_dict()
    if isinstance(outcome.error, DataHubError):
        result["write_back_error"] = str(outcome.error)
    print(json.dumps(result) if args.json else _summary(outcome.result))
    if outcome.error is not None:
        print(f"datahub-tokenize: error: {outcome.error}", file=sys.stderr)
        return _exit_code(outcome.error)
    return EXIT_OK


def _no_tracebacks(record: logging.LogRecord) -> bool:
    """The CLI's log filter: tracebacks only at debug level, and a connection's failed reset
    only there too. A traceback repeats the run's error in 20 lines, and a driver's one
    carries the SQL and its parameters (plaintext). SQLAlchemy's pool logs the reset of a
    connection the server dropped as an ERROR with the traceback of the run's failure; the
    run's one error line says it already."""
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    if not debug and record.name.startswith("sqlalchemy.pool") and record.exc_info:
        return False
    if not debug and (record.exc_info or record.exc_text):
        record.exc_info = record.exc_text = None
        record.stack_info = None
    return True


class _Interrupts:
    """SIGTERM and SIGINT during a run, in the main thread: the first raises RunInterrupted
    where the run is, so it unwinds through the loop's own cleanup (the writer thread is
    waited for, the transaction rolled back or, with ``commit_every_batch``, the batches
    committed so far kept, the lock released, the engine disposed) and the CLI reports it
    in one line (and one JSON object). A second signal while stopping ends the process at
    once with the same report: the server rolls back whatever transaction is open.

    The line says what state the table is in, as it is when the signal arrives: the run's
    mode says it, unless the run had already committed (the table is tokenized, and only
    recording it in DataHub was cut short)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, request: TokenizeRequest, *, json_output: bool, dry_run: bool) -> None:
        self.request = request
        self.json_output = json_output
        self.dry_run = dry_run
        self.commit_every_batch = False
        self.interrupted: RunInterrupted | None = None
        self._finished: TokenizeResult | None = None  # the run's result when it had committed
        self._what = ""  # the message's start: the dataset and the signal
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():  # (signal.signal refuses elsewhere)
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        # After the run, a signal changes nothing: the result is printed and the CLI exits.
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted is not None:
            self._report_now(signum)
        self.interrupted = RunInterrupted(signum, self._message(signum, frame))
        raise self.interrupted

    def _message(self, signum: int, frame: FrameType | None) -> str:
        name = signal.Signals(signum).name
        what = self._what = f"dataset {self.request.dataset_urn}: interrupted by {name}"
        if self.dry_run:
            return f"{what}; nothing was changed (a dry run)"
        committed = self._committed(frame)
        if committed is not None:
            rows, self._finished = committed
            return (f"{what} after the run had committed ({rows:,} rows updated: the table is tokenized), "
                    "before its outcome was recorded; run the same command again to record it (0 rows left "
                    "to change)")
        if self.commit_every_batch:
            return self._batches_message(what, None)
        return f"{what}; nothing was changed (the run's transaction was rolled back); run again to tokenize it"

    @staticmethod
    def _committed(frame: FrameType | None) -> tuple[int, TokenizeResult | None] | None:
        """(rows updated, the result if there is one yet) if the run had committed when the
        signal came, else None. Read from the frames the signal interrupted: the runner or
        the CLI holding a successful result (writing it back to DataHub, or returning it), or
        the warehouse side's ``execute_run`` past its commit."""
        outer = (_runner._tokenize_dataset.__code__, _run.__code__)
        run_code = execute_run.__code__
        while frame is not None:
            if frame.f_code in outer:
                outcome, result = frame.f_locals.get("outcome"), frame.f_locals.get("result")
                if outcome is not None:
                    result = outcome.result
                if isinstance(result, TokenizeResult) and result.status == "SUCCESS":
                    return result.rows_updated, result
                if frame.f_code is outer[0]:
                    return None
            counts = frame.f_locals.get("counts") if frame.f_code is run_code else None
            if counts is not None and counts.finishing:  # the loop ran and its final COMMIT was sent
                conn = frame.f_locals.get("conn")
                if conn is not None and not conn.in_transaction():  # ... and returned
                    return counts.rows_updated, None
            frame = frame.f_back
        return None

    @staticmethod
    def _batches_message(what: str, committed: dict[str, Any] | None) -> str:
        held = f" ({committed_text(committed)})" if committed is not None else " (if any)"
        return (f"{what}; batches committed before it{held} stay tokenized, the other rows still hold "
                "plaintext (run.commit_every_batch); run again to finish (values already tokens are skipped)")

    def _settle(self, error: RunInterrupted) -> None:
        """Once the run has unwound: a ``commit_every_batch`` run's error carries what its
        batches committed (its writer may have committed one more after the signal); the
        message says it."""
        committed = getattr(error, "committed_counts", None)
        if committed is not None and self._finished is None and not self.dry_run:
            error.args = (self._batches_message(self._what, committed),)

    def _failed(self, error: RunInterrupted) -> dict[str, Any]:
        if self._finished is not None:
            result = self._finished.to_dict()
            result["write_back_error"] = str(error)
            return result
        failed = failed_result(self.request, error, dry_run=self.dry_run)
        return dataclasses.replace(failed, error=str(error), error_type=type(error).__name__).to_dict()

    def report(self, error: RunInterrupted) -> int:
        """Print the one line (and the JSON object); the exit code."""
        self._settle(error)
        if self.json_output:
            print(json.dumps(self._failed(error)))
        print(f"datahub-tokenize: error: {error}", file=sys.stderr)
        return EXIT_SIGNAL_BASE + error.signum

    def _report_now(self, signum: int) -> None:
        """A second signal: the same report, written straight to the descriptors, and exit."""
        error = self.interrupted
        assert error is not None
        name = signal.Signals(signum).name
        line = f"datahub-tokenize: error: {error} (a second {name} stopped it at once)\n"
        try:
            if self.json_output:
                os.write(1, (json.dumps(self._failed(error)) + "\n").encode())
            os.write(2, line.encode())
        finally:
            os._exit(EXIT_SIGNAL_BASE + error.signum)


def _exit_code(error: BaseException) -> int:
    """2 when the config or the arguments are wrong, 1 for any other failure."""
    return EXIT_USAGE if isinstance(error, (ConfigError, InvalidDatasetError)) else EXIT_FAILED


def _version() -> str:
    try:
        return importlib.metadata.version("datahub-tokenize-action")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown (not installed)"


def _graph(section: dict) -> "_DataHub":
    """The DataHub client of the YAML's ``datahub:`` section (as the actions CLI builds it),
    with bounded defaults for ``timeout_sec`` and ``retry_max_times`` (DATAHUB_DEFAULTS)."""
    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph

    defaults = dict(DATAHUB_DEFAULTS)
    if os.environ.get("DATAHUB_REST_EMITTER_DEFAULT_RETRY_MAX_TIMES"):  # the client's own knob, if set
        defaults.pop("retry_max_times")
    try:
        config = DatahubClientConfig.model_validate({**defaults, **section})
    except ValidationError as e:
        raise ConfigError(validation_problems(e, DatahubClientConfig, "datahub")) from None
    except ValueError as e:
        raise ConfigError(f"datahub: {first_line(e)}") from None
    return _DataHub(DataHubGraph(config), config)


class _DataHub:
    """The graph calls the run makes, with each failure said in one line that names the server
    (masked) and what to do. After DataHub proved unreachable once, later calls fail at once
    with the same message instead of waiting out the timeouts again."""

    def __init__(self, graph: Any, config: Any) -> None:
        self._graph = graph
        self._config = config
        self.server = mask_server_url(config.server)
        self._unreachable: str | None = None

    def get_aspect(self, entity_urn: str, aspect_type: type) -> object | None:
        return self._call(self._graph.get_aspect, entity_urn, aspect_type)

    def emit_mcps(self, mcps: Sequence[object]) -> object:
        return self._call(self._graph.emit_mcps, mcps)

    def _call(self, method: Any, *args: Any) -> Any:
        if self._unreachable is not None:
            raise DataHubError(self._unreachable)
        started = time.monotonic()
        try:
            return method(*args)
        except Exception as e:
            message, unreachable = self._explain(e, time.monotonic() - started)
            if unreachable:  # said in full once; the run's later calls refer to it
                self._unreachable = f"DataHub at {self.server} is unreachable (as said above)"
            raise DataHubError(message) from None

    def _explain(self, error: BaseException, elapsed: float) -> tuple[str, bool]:
        """(one line, whether DataHub is unreachable) for a failed call."""
        import requests

        chain = list(_causes(error))
        names = {type(c).__name__ for c in chain}
        where = f"DataHub at {self.server}"
        attempts = f"{(self._config.retry_max_times or 0) + 1} attempts in {elapsed:.0f}s"
        status = next((c.response.status_code for c in chain
                       if isinstance(c, requests.HTTPError) and c.response is not None), None)
        if status == 401:
            return (f"{where} answered HTTP 401 Unauthorized: `datahub.token` is missing, wrong or expired; "
                    "set a valid access token"), False
        if status == 403:
            return (f"{where} answered HTTP 403 Forbidden: the token's user may not read or edit this "
                    "dataset's metadata; grant it the privilege or use another token"), False
        if status is not None:
            return f"{where} answered HTTP {status}", False
        if names & {"NameResolutionError", "gaierror"}:
            host = urllib.parse.urlsplit(self._config.server).hostname
            return f"{where} cannot be found: the host name {host} does not resolve ({attempts})", True
        if names & {"ConnectionRefusedError"}:
            return f"{where} refused the connection: nothing listens there ({attempts})", True
        if names & {"ReadTimeoutError", "ConnectTimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutError",
                    "timeout"}:
            return (f"{where} did not answer within {self._config.timeout_sec:g}s ({attempts}); "
                    "if it is only slow, raise `datahub.timeout_sec`"), True
        if names & {"SSLError", "SSLCertVerificationError"}:
            return f"{where}: TLS failed ({first_line(chain[-1])[:120]}); check `datahub.ca_certificate_path`", True
        if isinstance(error, requests.ConnectionError):
            return f"{where} is unreachable: {first_line(chain[-1])[:120]} ({attempts})", True
        return f"{where}: {type(error).__name__}: {first_line(error)[:150]}", False


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def mask_server_url(url: str) -> str:
    """``url`` without user info and with every query value masked."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<the configured server>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username or parts.password:
        netloc = "***@" + netloc
    query = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
