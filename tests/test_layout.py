"""The repo's platform/ folder never shadows Python's standard `platform` module.

Three ways the repo root lands first on sys.path: pytest run from the root, `python -m` from the
root, and the repo as a Ray job's working_dir. torch and Ray call platform.system() on import, so a
shadowing folder would break all three.
"""
from __future__ import annotations

import ast
import os
import re
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
         "import stark.model.stark, stark.platform.experiment, stark.platform.train.worker; "
         "print(stark.platform.experiment.__file__)")


def test_platform_folder_is_not_a_regular_package(repo_root):
    assert (repo_root / "platform").is_dir()
    assert not (repo_root / "platform" / "__init__.py").exists()


def test_every_stage_folder_under_platform_is_a_regular_package_listed_for_the_wheel(repo_root):
    listed = set(re.findall(r'"(stark\.platform\.\w+)"', (repo_root / "pyproject.toml").read_text()))
    stages = sorted(p for p in (repo_root / "platform").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert {p.name for p in stages} >= {"ingest", "data", "train", "track", "evaluate", "tune", "registry"}
    for stage in stages:
        assert (stage / "__init__.py").is_file(), stage
        assert f"stark.platform.{stage.name}" in listed, stage


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


# --- no import loops inside stark.platform -------------------------------------------------------------
def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top-level statements, and those under a top-level
    `if` / `try` (lazy imports inside functions run later and cannot form a loop at import time)."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            pending += node.body + node.orelse + getattr(node, "finalbody", [])
            pending += [stmt for handler in getattr(node, "handlers", []) for stmt in handler.body]
    return found


def platform_import_graph(repo_root: Path) -> dict[str, set[str]]:
    """stark.platform module -> the stark.platform modules it imports at module level."""
    folder = repo_root / "platform"
    modules = {}
    for path in sorted(folder.rglob("*.py")):
        parts = ("stark", "platform", *path.relative_to(folder).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, parts[:-1] if is_package else parts[:-1])
    graph = {}
    for name, (path, package) in modules.items():
        edges = set()
        for node in module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(list(package[:len(package) - node.level + 1]) + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_stark_platform_has_no_import_cycle(repo_root):
    graph = platform_import_graph(repo_root)
    assert "stark.platform.experiment" in graph and "stark.platform.train.worker" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


STAGES = ("ingest", "data", "train", "track", "evaluate", "tune", "registry", "pipeline")  # the order data flows


def test_a_stage_imports_only_the_stages_before_it_and_shared_modules_import_only_stage_configs(repo_root):
    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 3 and parts[2] in STAGES else None

    wrong = []
    for module, imported in platform_import_graph(repo_root).items():
        for target in imported:
            if stage(target) is None:
                continue
            if stage(module) is None:  # a shared module at the top: only experiment.py composes stage configs
                if not (module == "stark.platform.experiment" and target.endswith(".config")):
                    wrong.append(f"{module} -> {target}")
            elif STAGES.index(stage(target)) > STAGES.index(stage(module)):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the flow: " + ", ".join(sorted(wrong))


def test_the_cycle_finder_names_a_loop():
    """The control: the finder does report a loop when there is one."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
