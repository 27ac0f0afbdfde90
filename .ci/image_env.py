#!/usr/bin/env python3
"""Reproduce the stock `acryldata/datahub-actions` image's Python environment for DataHub
releases we support, install this package into it, and check that nothing breaks.

How the image builds its venv (datahub-project/datahub, docker/datahub-actions/Dockerfile):
`uv venv --python 3.11`, then `uv pip install -e '/metadata-ingestion/[base,s3,gcs,abs]'` and
`uv pip install -e '/datahub-actions/[all]'`, unpinned, resolved on build day. Here, for each
release X: a fresh Python 3.11 venv made by `uv` (no pip in it, as in the image) gets
`acryl-datahub[base,s3,gcs,abs]==X acryl-datahub-actions[all]==X` from PyPI, resolved as of
the release's upload day (`uv --exclude-newer`, so the run is reproducible and close to the
image tagged vX), and NEVER with our constraints.txt. Then:

1. pip (`--dry-run`, no config, no constraints) is asked what installing this package would
   do, and `uv pip install <source tree>` installs it (what docker/Dockerfile does);
   any distribution of the image that is upgraded, downgraded or removed fails the run;
2. `pip check` and `uv pip check` must pass;
3. every Requires-Dist of acryl-datahub[base,s3,gcs,abs] and acryl-datahub-actions[all]
   (recursively through the extras they name) must still be met by what is installed;
4. the `tokenize` entry point of `datahub_actions.action.plugins` must load, through the
   stock action registry that `datahub actions` uses, and the stock CLI must start;
5. then `.[test]` is installed and the WHOLE suite (`pytest tests -q -p no:cacheprovider`)
   must pass in that venv (the end-to-end tests run the stock `datahub actions` CLI).

Our own install step is not date-capped: it resolves what a user building on top of that
image gets today. Nothing is cached between runs: uv and pip use a cache directory made for
this run and removed afterwards (pass --keep to keep the work directory for a look).

Usage: python3 .ci/image_env.py [--release 1.7.0 --release 1.7.0.17] [--skip-tests] [--keep]
Needs: Python 3.11 (python3.11 or python3) with venv, PyPI, and the PostgreSQL server binaries
the test suite starts its throwaway cluster from.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
UV_VERSION = "0.13.9"  # the installer, pinned so a resolution can be reproduced

# Release -> resolution cap: the day after acryl-datahub(-actions) X was uploaded to PyPI,
# i.e. what an image built on release day resolved. Add a release here to test it.
RELEASES = {
    "1.7.0": "2026-08-05T00:00:00Z",  # uploaded 2026-08-04 17:31Z (the oldest we support)
    "1.7.0.17": "2026-10-24T00:00:00Z",  # uploaded 2026-10-23 12:44Z (the newest, today)
}
DATAHUB_EXTRAS = ("base", "s3", "gcs", "abs")
ACTIONS_EXTRAS = ("all",)
PLUGIN_GROUP, PLUGIN_NAME = "datahub_actions.action.plugins", "tokenize"
SHOW = ("acryl-datahub", "acryl-datahub-actions", "sqlalchemy", "pydantic", "confluent-kafka")


class Failed(Exception):
    pass


def log(msg: str) -> None:
    print(f"[image-env] {msg}", flush=True)


#: The suite takes about 2 minutes; a hang must fail the job long before CI's own limit.
SUITE_TIMEOUT_S = 900


def run(cmd, *, env=None, cwd=None, capture=False, check=True, timeout=None) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(c) for c in cmd))
    try:
        proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, text=True, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)
    except subprocess.TimeoutExpired as e:  # a hang fails the job with what it printed
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(out[-20000:])
        raise Failed(f"command did not finish within {timeout}s: {' '.join(str(c) for c in cmd)}") from None
    if check and proc.returncode != 0:
        if capture:
            print(proc.stdout)
        raise Failed(f"command failed ({proc.returncode}): {' '.join(str(c) for c in cmd)}")
    return proc


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_python311() -> str:
    for cand in ("python3.11", "python3", sys.executable):
        exe = shutil.which(cand) or (cand if os.path.isabs(cand) else None)
        if not exe:
            continue
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if out.stdout.strip() == "3.11":
            return exe
    raise Failed("Python 3.11 is needed (the image's Python): install python3.11")


# --- what is installed in a venv, read from its metadata (no import of its packages) -------

def site_packages(venv: pathlib.Path) -> pathlib.Path:
    [sp] = venv.glob("lib/python3.*/site-packages")
    return sp


def installed(venv: pathlib.Path) -> dict:
    from importlib.metadata import distributions
    out = {}
    for d in distributions(path=[str(site_packages(venv))]):
        name = d.metadata["Name"]
        if name:
            out[norm(name)] = d.version
    return out


def check_extras(venv: pathlib.Path, roots) -> list:
    """Every requirement of each (distribution, extras) root, followed through the extras the
    requirements name, met by the installed versions. Returns the unmet ones."""
    from importlib.metadata import distributions
    from packaging.requirements import Requirement

    dists = {norm(d.metadata["Name"]): d for d in distributions(path=[str(site_packages(venv))])
             if d.metadata["Name"]}
    seen, problems = set(), []
    todo = [(norm(n), frozenset(e)) for n, e in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = dists.get(name)
        if dist is None:
            problems.append(f"{name} is not installed")
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None:
                # This interpreter is the venv's Python (3.11, same platform); plus each extra.
                if not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                    continue
            rn = norm(req.name)
            have = dists.get(rn)
            if have is None:
                problems.append(f"{name}[{','.join(sorted(extras))}] needs {raw!r}: not installed")
                continue
            if req.specifier and not req.specifier.contains(have.version, prereleases=True):
                problems.append(f"{name}[{','.join(sorted(extras))}] needs {raw!r}: {rn} {have.version} is installed")
            if req.extras:
                todo.append((rn, frozenset(req.extras)))
    return problems


def diff(before: dict, after: dict):
    changed = {n: (v, after[n]) for n, v in before.items() if n in after and after[n] != v}
    removed = sorted(n for n in before if n not in after)
    added = {n: after[n] for n in sorted(after) if n not in before}
    return changed, removed, added


# --- one release ---------------------------------------------------------------------------

def check_release(release: str, cap: str, *, work: pathlib.Path, src: pathlib.Path, py311: str,
                  uv: str, tools_py: str, env: dict, skip_tests: bool) -> dict:
    t0 = time.monotonic()
    venv = work / f"venv-{release}"
    vpy = venv / "bin" / "python"
    result = {"release": release, "exclude_newer": cap}

    # The image: a uv venv (no pip), its two packages with their extras, as of release day.
    run([uv, "venv", "--quiet", "--python", py311, venv], env=env)
    run([uv, "pip", "install", "--quiet", "--python", vpy, "--exclude-newer", cap,
         f"acryl-datahub[{','.join(DATAHUB_EXTRAS)}]=={release}",
         f"acryl-datahub-actions[{','.join(ACTIONS_EXTRAS)}]=={release}"], env=env)
    before = installed(venv)
    result["image"] = {n: before.get(n) for n in SHOW}
    result["image_distributions"] = len(before)
    log(f"{release}: the image env has {len(before)} distributions: "
        + ", ".join(f"{n} {before.get(n)}" for n in SHOW))
    roots = [("acryl-datahub", DATAHUB_EXTRAS), ("acryl-datahub-actions", ACTIONS_EXTRAS)]
    if problems := check_extras(venv, roots):
        raise Failed(f"{release}: the reproduced image env itself is inconsistent: {problems}")

    # pip's view, as a user with pip in the image would install us (no config, no constraints).
    report = work / f"pip-report-{release}.json"
    run([tools_py, "-m", "pip", "--isolated", "--python", vpy, "install", "--quiet", "--dry-run",
         "--no-cache-dir", "--report", report, src], env=env)
    pip_plan = {norm(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    pip_changes = {n: (before[n], v) for n, v in pip_plan.items() if n in before and before[n] != v}
    if pip_changes:
        raise Failed(f"{release}: `pip install` of this package would change the image's "
                     f"distributions: {pip_changes}")

    # uv's install, as docker/Dockerfile does it.
    run([uv, "pip", "install", "--quiet", "--python", vpy, src], env=env)
    after = installed(venv)
    changed, removed, added = diff(before, after)
    result["added"] = added
    log(f"{release}: our install added {len(added)}: " + ", ".join(f"{n} {v}" for n, v in added.items()))
    if changed or removed:
        raise Failed(f"{release}: installing this package changed the image's distributions: "
                     f"changed {changed}, removed {removed}")
    if set(pip_plan) - {"datahub-tokenize-action"} != set(added) - {"datahub-tokenize-action"}:
        log(f"{release}: note: pip would add {sorted(pip_plan)}, uv added {sorted(added)}")

    run([tools_py, "-m", "pip", "--isolated", "--python", vpy, "check"], env=env)
    run([uv, "pip", "check", "--python", vpy], env=env)
    if problems := check_extras(venv, roots + [("datahub-tokenize-action", ())]):
        raise Failed(f"{release}: requirements no longer met after our install: {problems}")

    # The plugin, loaded as the stock pipeline loads it, and the stock CLI.
    probe = (
        "from importlib.metadata import entry_points\n"
        f"[ep] = [e for e in entry_points(group={PLUGIN_GROUP!r}) if e.name == {PLUGIN_NAME!r}]\n"
        "cls = ep.load()\n"
        "from datahub_actions.action.action_registry import action_registry\n"
        f"assert action_registry.get({PLUGIN_NAME!r}) is cls, action_registry.get({PLUGIN_NAME!r})\n"
        "print('entry point', ep.value, '->', cls)\n"
    )
    run([vpy, "-c", probe], cwd=work, env=env)  # cwd outside the source tree: the installed copy
    run([venv / "bin" / "datahub", "actions", "version"], cwd=work, env=env)

    if not skip_tests:
        snap = installed(venv)
        run([uv, "pip", "install", "--quiet", "--python", vpy, f"{src}[test]"], env=env)
        now = installed(venv)
        moved = {n: (v, now.get(n)) for n, v in snap.items() if now.get(n) != v}
        if moved:
            log(f"{release}: note: the test extras changed {moved} (after the checks above)")
        t1 = time.monotonic()
        proc = run([vpy, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"], cwd=src,
                   env={**env, "CI": os.environ.get("CI", "true")}, capture=True, check=False,
                   timeout=SUITE_TIMEOUT_S)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-15:]
        print("\n".join(tail), flush=True)
        summary = next((ln for ln in reversed(tail) if re.search(r"\d+ (passed|failed|error)", ln)), "")
        result["tests"] = summary.strip("= ")
        result["tests_seconds"] = round(time.monotonic() - t1)
        if proc.returncode != 0:
            (work / f"pytest-{release}.log").write_text(proc.stdout)
            print(proc.stdout[-20000:])
            raise Failed(f"{release}: the test suite failed in the image env: {result['tests']}")
    result["seconds"] = round(time.monotonic() - t0)
    return result


def source_copy(dest: pathlib.Path) -> pathlib.Path:
    """The source tree as git sees it (tracked + untracked, not ignored), copied so that the
    builds and test runs here leave nothing in the working tree."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        p = ROOT / f
        if p.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / f)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", action="append", help=f"DataHub release(s) (default: {', '.join(RELEASES)})")
    ap.add_argument("--skip-tests", action="store_true", help="only the install checks")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--workdir", help="work directory (default: a new temporary one)")
    args = ap.parse_args()
    releases = args.release or list(RELEASES)
    for r in releases:
        if r not in RELEASES:
            raise SystemExit(f"unknown release {r}: add it with its upload day to RELEASES")

    t0 = time.monotonic()
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="image-env-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        py311 = find_python311()
        # A fresh cache for this run only: the timing is a cold one, and nothing is kept.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "PYTHONPATH"))}
        env.update(UV_CACHE_DIR=str(work / "cache" / "uv"), PIP_NO_CACHE_DIR="1",
                   UV_PYTHON_DOWNLOADS="never", UV_NO_CONFIG="1")
        tools = work / "tools"
        run([py311, "-m", "venv", tools], env=env)
        tools_py = str(tools / "bin" / "python")
        run([tools_py, "-m", "pip", "install", "--quiet", "--isolated", "--no-cache-dir",
             f"uv=={UV_VERSION}", "packaging>=24", "pip>=25"], env=env)
        uv = str(tools / "bin" / "uv")
        if "packaging" not in sys.modules:
            sys.path.insert(0, str(site_packages(tools)))  # packaging, for the extras check
        src = source_copy(work / "src")
        results = []
        for r in releases:
            results.append(check_release(r, RELEASES[r], work=work, src=src, py311=py311, uv=uv,
                                         tools_py=tools_py, env=env, skip_tests=args.skip_tests))
        total = round(time.monotonic() - t0)
        (work / "summary.json").write_text(json.dumps({"results": results, "seconds": total}, indent=2))
        log(f"all releases passed in {total} s:")
        for res in results:
            log(f"  {res['release']} (resolved as of {res['exclude_newer']}): "
                + ", ".join(f"{n} {v}" for n, v in res["image"].items())
                + f"; we added {', '.join(f'{n} {v}' for n, v in res['added'].items())}"
                + (f"; tests: {res['tests']}" if "tests" in res else ""))
        return 0
    except Failed as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
