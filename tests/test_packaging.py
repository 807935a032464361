"""The built wheel installs the `stark` namespace (model, platform, jobs, presets) and no top-level `platform`."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_wheel_holds_the_namespace_and_never_a_top_level_platform(tmp_path, repo_root):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(repo_root)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("stark_platform-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stark/model/stark.py" in names and "stark/platform/experiment.py" in names
    assert "stark/platform/train/worker.py" in names and "stark/platform/ingest/__init__.py" in names
    assert "stark/jobs/cli.py" in names and "stark/configs/stark_st50.yaml" in names
    assert not any(n.startswith(("platform/", "model/", "jobs/")) for n in names)
    assert "stark/platform/__init__.py" not in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "stark = stark.jobs.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
