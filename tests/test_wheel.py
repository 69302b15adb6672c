"""The built wheel runs outside the repository: it holds every data file the package reads
(training presets, engine configs, chat templates) and finds them through the installed package.

The wheel is built from a copy of the source, installed with pip into a fresh virtual environment
(which borrows this environment's third-party packages through a plain `.pth` path, so nothing is
downloaded and the editable checkout is not on its path) and run from a folder outside the repo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src-copy"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    dist = base / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), str(src)],
        cwd=base,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("decovlm-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base
        ).stdout.strip()
    )
    # A plain path line: the parent environment's packages, but not its editable-install hooks.
    (site / "_parent_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + [str(wheel)],
        cwd=base,
    )
    assert done.returncode == 0, done.stderr
    outside = base / "elsewhere"
    outside.mkdir()
    return {"wheel": wheel, "python": python, "site": site, "bin": venv / "bin", "cwd": outside}


def test_wheel_holds_every_data_file_of_the_package(installed):
    tracked = _run(["git", "ls-files", "src/decovlm"], cwd=ROOT).stdout.split()
    data = {p[len("src/") :] for p in tracked if not p.endswith(".py")}
    assert data, "git ls-files found no data files: is this a git checkout?"
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert data - names == set(), "package data missing from the wheel"


def test_installed_wheel_resolves_presets_engine_configs_and_templates(installed):
    script = """
import json, decovlm
from pathlib import Path
from decovlm.train.config import list_presets, load_config
from decovlm.train.engine_files import list_engine_files, resolve_engine_file
out = {"package": decovlm.__file__, "presets": {}, "engines": list_engine_files()}
for name in list_presets():
    t = load_config(name, []).training
    out["presets"][name] = [resolve_engine_file(t.deepspeed, "deepspeed"),
                            resolve_engine_file(t.fsdp_config, "fsdp_config")]
for name in out["engines"]:
    assert Path(resolve_engine_file(name, "deepspeed")).is_file(), name
print(json.dumps(out))
"""
    result = _run([str(installed["python"]), "-c", script], cwd=installed["cwd"])
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    site = str(installed["site"])
    assert out["package"].startswith(site), "imported the checkout, not the wheel"
    assert {"zero2", "zero3", "fsdp_full_shard", "fsdp_shard_grad_op"} <= set(out["engines"])
    assert len(out["presets"]) >= 5
    engine_paths = [p for pair in out["presets"].values() for p in pair if p]
    assert engine_paths, "no preset names an engine config"
    assert all(p.startswith(site) for p in engine_paths)


def test_installed_cli_dry_run_resolves_the_finetune_preset(installed):
    decovlm = str(installed["bin"] / "decovlm")
    ok = _run([decovlm, "train", "vicuna7b_finetune", "--dry-run"], cwd=installed["cwd"])
    assert ok.returncode == 0, ok.stderr
    assert "zero3.json" in ok.stdout and str(installed["site"]) in ok.stdout
    bad = _run(
        [decovlm, "train", "vicuna7b_finetune", "training.deepspeed=zero9", "--dry-run"],
        cwd=installed["cwd"],
    )
    assert bad.returncode == 2
    assert "zero9" in bad.stdout + bad.stderr and "zero3" in bad.stdout + bad.stderr
