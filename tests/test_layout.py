"""The repo's platform/ folder never shadows Python's standard `platform` module.

Three ways the repo root lands first on sys.path: pytest run from the root, `python -m` from the
root, and the repo as a Ray job's working_dir. torch and Ray call platform.system() on import, so a
shadowing folder would break all three.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def run_python(args: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


PROBE = ("import platform, sys; print(platform.__file__); print(platform.system()); "
         "import stark.model.stark, stark.platform.config; print(stark.platform.config.__file__)")


def test_platform_folder_is_not_a_regular_package(repo_root):
    assert (repo_root / "platform").is_dir()
    assert not (repo_root / "platform" / "__init__.py").exists()


def test_under_pytest_platform_is_the_standard_module():
    import platform

    assert Path(platform.__file__).resolve().parent == STDLIB
    assert platform.system()


def test_with_the_repo_root_first_on_sys_path_platform_is_the_standard_module(repo_root):
    result = run_python(["-c", PROBE], cwd=repo_root, extra_path=repo_root)
    assert result.returncode == 0, result.stderr
    platform_file, system, config_file = result.stdout.split()
    assert Path(platform_file).resolve().parent == STDLIB and system


def test_python_dash_m_from_the_repo_root(repo_root):
    # `python -m` puts the current directory first on sys.path.
    stdlib_main = run_python(["-m", "platform"], cwd=repo_root)
    assert stdlib_main.returncode == 0 and stdlib_main.stdout.strip(), stdlib_main.stderr
    job = run_python(["-m", "stark.jobs.model_summary", "--config", "stark_tiny"], cwd=repo_root)
    assert job.returncode == 0, job.stderr
    assert "FLOPs per tracked frame" in job.stdout


def test_a_regular_package_named_platform_would_shadow_it(tmp_path, repo_root):
    """The control: the guarantee above comes from the missing __init__.py, not from luck."""
    shutil.copytree(repo_root / "platform", tmp_path / "platform")
    (tmp_path / "platform" / "__init__.py").write_text("")
    result = run_python(["-c", "import platform; print(platform.__file__)"], cwd=tmp_path, extra_path=tmp_path)
    assert str(tmp_path / "platform" / "__init__.py") in result.stdout


@pytest.mark.slow
def test_the_repo_as_a_ray_job_working_dir_keeps_workers_alive(repo_root):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"working_dir": str(repo_root)},
             log_to_driver=False)
    try:
        @ray.remote
        def probe():
            import os as _os
            import platform as _platform
            import sys as _sys

            import stark.model.stark  # noqa: F401 - the project imports on the worker
            return _platform.__file__, _platform.system(), _os.getcwd(), list(_sys.path)

        platform_file, system, cwd, path = ray.get(probe.remote(), timeout=240)
    finally:
        ray.shutdown()
    assert Path(platform_file).resolve().parent == STDLIB and system
    # the worker really runs inside the uploaded repo, with it on sys.path
    assert (Path(cwd) / "platform").is_dir() and cwd in path
