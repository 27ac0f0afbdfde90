"""``datahub-tokenize``: run the same flow as the action, by hand."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from datahub.ingestion.graph.client import DataHubGraph

from ._config import load_pipeline_file
from ._exceptions import ConfigError, DataHubError, InvalidDatasetError, TokenizeError
from ._request import TokenizeRequest
from ._result import TokenizeResult
from ._runner import failed_result, tokenize_dataset

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datahub-tokenize", description=__doc__)
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
            f"already tokens {r.values_skipped.get(c, 0):,}, nulls {r.nulls.get(c, 0):,}, "
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
    columns = tuple(c.strip() for c in args.columns.split(",") if c.strip()) if args.columns else None
    request = TokenizeRequest(args.dataset, columns)
    try:
        pipeline = load_pipeline_file(args.config)
        graph = _graph(pipeline.datahub) if pipeline.datahub and (not args.no_write_back or not columns) else None
        outcome = tokenize_dataset(pipeline.config, request, graph=graph, dry_run=args.dry_run,
                                   write_back=not args.no_write_back)
    except Exception as e:  # the last stop: one line (and one JSON object), never a bare traceback
        if not isinstance(e, TokenizeError):
            # Only at debug level: a driver's message can carry SQL parameters (plaintext).
            logger.debug("unexpected error", exc_info=True)
        failed = failed_result(request, e, dry_run=args.dry_run)  # its error is the one line to show
        if args.json:
            print(json.dumps(failed.to_dict()))
        print(f"datahub-tokenize: error: {failed.error}", file=sys.stderr)
        return _exit_code(e)
    result = outcome.result.to_dict()
    if isinstance(outcome.error, DataHubError):
        result["write_back_error"] = str(outcome.error)
    print(json.dumps(result) if args.json else _summary(outcome.result))
    if outcome.error is not None:
        print(f"datahub-tokenize: error: {outcome.error}", file=sys.stderr)
        return _exit_code(outcome.error)
    return EXIT_OK


def _exit_code(error: BaseException) -> int:
    """2 when the config or the arguments are wrong, 1 for any other failure."""
    return EXIT_USAGE if isinstance(error, (ConfigError, InvalidDatasetError)) else EXIT_FAILED


def _graph(section: dict) -> "DataHubGraph":
    """The DataHub client of the YAML's ``datahub:`` section (as the actions CLI builds it)."""
    from datahub.ingestion.graph.client import DatahubClientConfig, DataHubGraph

    try:
        return DataHubGraph(DatahubClientConfig.model_validate(section))
    except ValueError as e:
        raise ConfigError(f"invalid `datahub:` section: {e}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
