"""The package as a release would publish it: `python -m build` makes a valid sdist and
wheel (`twine check --strict`), and the wheel holds what users install."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_the_sdist_and_the_wheel_pass_twine_check(dist):
    files = sorted(str(p) for p in dist.iterdir())
    assert any(f.endswith(".whl") for f in files) and any(f.endswith(".tar.gz") for f in files)
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_registers_the_action_and_the_cli_and_carries_the_license(dist):
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = z.read(entry_points).decode()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
    assert "[datahub_actions.action.plugins]\ntokenize = datahub_tokenize_action._action:TokenizeAction" in text
    assert "datahub-tokenize = datahub_tokenize_action.cli:main" in text
    assert any(n.endswith("licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta or "License: Apache-2.0" in meta
    assert not any(n.startswith("tests/") for n in names), "tests are not installed as a top-level package"


def test_the_sdist_carries_the_shipped_config_and_the_license(dist):
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "setup.cfg", "pyproject.toml"} <= names
