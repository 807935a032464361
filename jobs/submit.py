"""`stark submit --address http://HEAD:8265 -- stark COMMAND ...`: run any stark job on a Ray cluster.

The job goes through Ray's job submission API (the head's dashboard port). Its runtime environment:

- `py_modules`: this package's own source, staged as one regular package `stark/` (model/, platform/,
  jobs/, configs/ copied from wherever `import stark` found them: a checkout or site-packages). Ray
  puts it first on the job's PYTHONPATH, so the driver and every worker import exactly the code that
  was submitted, whether or not the cluster's image has a (possibly older) copy installed. Inside
  `stark/` the folder `platform/` is `stark.platform` and never the top-level `platform`.
- `working_dir`: the project checkout (default) or --working-dir; the job runs in its copy, so paths
  relative to it (`--config configs/x.yaml`) resolve on the cluster. The checkout root is safe as a
  working_dir because `platform/` there has no `__init__.py` (see tests/test_layout.py).
- `env_vars`: the S3 settings (AWS endpoint, credentials, region) and every MLFLOW_* variable set
  here, plus --env KEY=VALUE. Other AWS_* variables (profiles, CA bundle paths) name local files
  and stay behind.

With --installed nothing is uploaded and the cluster's installed package runs (the KubeRay image).
The entrypoint is `python -m stark.jobs.cli COMMAND ...`, which works in both cases; the exit code is
0 only when the job SUCCEEDED (a failed job returns its own exit code when it has one, else 1).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stark.jobs.boundary import job_boundary

SUBPACKAGES = ("model", "platform", "jobs", "configs")
PASSTHROUGH = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
PASSTHROUGH_PREFIX = "MLFLOW_"
# Never uploaded with the working_dir (Ray also honours the checkout's .gitignore files).
EXCLUDES = [".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
            ".benchmarks", "stark-data", "stark-runs", "stark-pipeline", "mlruns", "mlartifacts", "mlflow.db", "*.pth", "*.pth.tar"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def parse_args(argv: list[str], prog: str) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog, usage=f"{prog} [--address URL] [options] -- stark COMMAND [args ...]",
        description="Submit a stark job to a Ray cluster through its job submission API, stream its logs "
                    "and exit with its status (0 only for SUCCEEDED).")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="the head's dashboard URL, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS)")
    parser.add_argument("--working-dir", default=None,
                        help="folder uploaded as the job's working directory (default: the project checkout "
                             "this stark is imported from, if any; none with --installed)")
    parser.add_argument("--installed", action="store_true",
                        help="the cluster's image already has stark-platform installed: upload no code")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable for the job (repeatable); the S3 settings "
                             "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) and MLFLOW_* set here are passed on anyway")
    parser.add_argument("--submission-id", default=None, help="the job's id (default: one from Ray)")
    parser.add_argument("--no-wait", action="store_true",
                        help="return once the job is accepted, printing how to follow it")
    if "--" in argv:
        split = argv.index("--")
        options, command = argv[:split], argv[split + 1:]
    else:
        options, command = argv, []
    args = parser.parse_args(options)
    if command[:1] == ["stark"]:
        command = command[1:]
    from stark.jobs.cli import COMMANDS

    known = sorted(name for name in COMMANDS if name != "submit")
    if not command:
        parser.error(f"give the job after --, e.g. `-- stark model-summary --config stark_tiny` "
                     f"(commands: {', '.join(known)})")
    if command[0] not in known:
        parser.error(f"{command[0]!r} is not a stark command that runs as a job (commands: {', '.join(known)})")
    if not args.address:
        parser.error("--address is required (or set $RAY_ADDRESS), e.g. --address http://127.0.0.1:8265")
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: expected KEY=VALUE")
    return args, command


# --- runtime environment ------------------------------------------------------------------------
def project_root() -> Path | None:
    """The checkout `import stark` comes from (an editable install), or None for a site-packages copy."""
    jobs_dir = Path(importlib.import_module("stark.jobs").__file__).resolve().parent
    pyproject = jobs_dir.parent / "pyproject.toml"
    if pyproject.is_file() and 'name = "stark-platform"' in pyproject.read_text():
        return jobs_dir.parent
    return None


def stage_package(dest: Path) -> Path:
    """Copy the source of every stark subpackage into `dest/stark`, a regular package, and return it.

    Sources are the folders the running interpreter imports from, so an editable checkout and a
    site-packages install stage the same tree. Where a subpackage spans several folders (a namespace
    package), the first on its path wins, as it does for imports.
    """
    root = dest / "stark"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text('"""stark-platform, as submitted by `stark submit`."""\n')
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SUBPACKAGES:
        module = importlib.import_module(f"stark.{name}")
        folders = [Path(p) for p in module.__path__ if Path(p).is_dir()]
        if not folders:
            raise RuntimeError(f"stark.{name}: no source folder to upload (path {list(module.__path__)})")
        for folder in reversed(folders):
            shutil.copytree(folder, root / name, ignore=ignore, dirs_exist_ok=True)
    return root


def passthrough_env(environ: dict[str, str], extra: list[str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIX)}
    env.update(item.split("=", 1) for item in extra)
    env.setdefault("PYTHONUNBUFFERED", "1")  # log lines reach the stream as they are printed
    return env


def build_runtime_env(staged: Path | None, working_dir: Path | None, env_vars: dict[str, str]) -> dict:
    runtime_env: dict = {"env_vars": env_vars}
    if working_dir is not None:
        runtime_env["working_dir"] = str(working_dir)
    if staged is not None:
        runtime_env["py_modules"] = [str(staged)]
    if working_dir is not None or staged is not None:
        runtime_env["excludes"] = list(EXCLUDES)
    return runtime_env


def entrypoint(command: list[str]) -> str:
    return shlex.join(["python", "-m", "stark.jobs.cli", *command])


# --- following the job --------------------------------------------------------------------------
def stream_logs(client, job_id: str) -> None:
    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(tail())


def status_name(status) -> str:
    return getattr(status, "value", str(status))  # JobStatus.SUCCEEDED -> "SUCCEEDED"


def wait_for_end(client, job_id: str, poll_seconds: float = 1.0):
    """Job info once the job is terminal (the log stream can close a moment before the status lands)."""
    while True:
        info = client.get_job_info(job_id)
        if status_name(info.status) in TERMINAL:
            return info
        time.sleep(poll_seconds)


def exit_code(info) -> int:
    status = status_name(info.status)
    if status == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if status == "FAILED" and isinstance(code, int) and 0 < code < 256 else 1


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark submit") -> int:
    args, command = parse_args(list(sys.argv[1:] if argv is None else argv), prog)
    from ray.job_submission import JobSubmissionClient

    if args.working_dir is not None:
        working_dir = Path(args.working_dir).resolve()
        if not working_dir.is_dir():
            print(f"error: --working-dir {args.working_dir}: no such folder", file=sys.stderr)
            return 2
    else:
        working_dir = None if args.installed else project_root()
    env_vars = passthrough_env(dict(os.environ), args.env)

    try:
        client = JobSubmissionClient(args.address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"error: cannot reach the Ray job API at {args.address}: {exc}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="stark-submit-") as tmp:
        staged = None if args.installed else stage_package(Path(tmp))
        runtime_env = build_runtime_env(staged, working_dir, env_vars)
        code = "the cluster's installed stark" if args.installed else "stark from " + str(
            Path(importlib.import_module("stark.jobs").__file__).resolve().parent.parent)
        print(f"submitting `{shlex.join(['stark', *command])}` to {args.address}\n"
              f"  code: {code}\n  working_dir: {working_dir or '(none)'}\n"
              f"  env: {', '.join(sorted(env_vars)) or '(none)'}", flush=True)
        job_id = client.submit_job(entrypoint=entrypoint(command), runtime_env=runtime_env,
                                   submission_id=args.submission_id,
                                   metadata={"stark_command": command[0]})
    follow = f"ray job logs --follow {job_id} --address {args.address}"
    if args.no_wait:
        print(f"job {job_id} submitted\n  follow: {follow}\n  status: ray job status {job_id} "
              f"--address {args.address}\n  stop:   ray job stop {job_id} --address {args.address}")
        return 0

    print(f"job {job_id} submitted; its logs follow (Ctrl-C detaches, the job keeps running)\n", flush=True)
    start = time.perf_counter()
    try:
        try:
            stream_logs(client, job_id)
        except Exception as exc:  # noqa: BLE001 - the stream broke off; the job's status below decides
            print(f"\n(log stream ended early: {exc}; waiting for the job's status)", flush=True)
        info = wait_for_end(client, job_id)
    except KeyboardInterrupt:
        print(f"\ndetached; job {job_id} keeps running\n  follow: {follow}\n"
              f"  stop:   ray job stop {job_id} --address {args.address}", file=sys.stderr)
        return 130
    status = status_name(info.status)
    print(f"\njob {job_id} {status} after {time.perf_counter() - start:.1f}s"
          + (f": {info.message.splitlines()[0]}" if status != "SUCCEEDED" and info.message else ""))
    return exit_code(info)


if __name__ == "__main__":
    sys.exit(main())
