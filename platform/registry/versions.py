"""The MLflow model registry: register a checkpoint as a version, resolve aliases, and a lock that
serialises promotions.

A version carries everything needed to trust and run it, as version tags set in the same call that
creates it (so a failure never leaves a half-described version): architecture, tuned tracker
settings, the training run, the data manifests it saw (URI + content hash), and evaluation metrics
with the benchmark/split they were measured on. The weights are a platform checkpoint artifact of a
pyfunc model logged from code (platform/registry/mlflow_model.py), never a pickled class.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .. import storage
from ..ingest.manifest import manifest_uri
from ..mlflow_runs import EXPERIMENTS, experiment_id, mlflow_client
from ..model_loading import parse_model_uri, resolve_version  # noqa: F401 - the registry's names for them

MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))


class RegistryError(RuntimeError):
    """The registry could not be read or changed; nothing was half-done."""

def explain_mlflow_error(exc: Exception, tracking_uri: str) -> RegistryError:
    text = str(exc)
    if any(s in text for s in ("Connection refused", "Max retries", "ConnectionError", "Failed to establish")):
        return RegistryError(f"the MLflow server at {tracking_uri} is not answering ({type(exc).__name__}); "
                             f"nothing was changed in the registry")
    return RegistryError(f"MLflow at {tracking_uri}: {text.splitlines()[0] if text else type(exc).__name__}")


def alias_version(client, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower() or "INVALID_PARAMETER" in str(exc):
            return None
        raise


def manifest_hashes(uris: list[str], storage_cfg=None) -> list[dict]:
    """[{uri, sha256}] of the manifests a model was trained on ('unavailable' when unreachable now)."""
    out = []
    for uri in uris:
        try:
            digest = hashlib.sha256(storage.read_bytes(manifest_uri(uri), storage_cfg)).hexdigest()
        except Exception:  # noqa: BLE001 - provenance is best effort; registration does not depend on it
            digest = "unavailable"
        out.append({"uri": uri, "sha256": digest})
    return out


def version_tags(content: dict, eval_scores: dict[str, float] | None = None, benchmark: str | None = None,
                 split: str | None = None, data_hash: str | None = None, storage_cfg=None) -> dict[str, str]:
    """What a version carries, from its platform checkpoint and an optional evaluation."""
    config = content.get("config") or {}
    model = config.get("model", {})
    tags = {
        "stark.variant": str(model.get("variant", "?")),
        "stark.backbone": str(model.get("backbone", {}).get("name", "?")),
        "stark.model_config": json.dumps(model, sort_keys=True),
        "stark.tracker": json.dumps(content.get("tracker") or {}, sort_keys=True),
    }
    for key, value in (content.get("tracker") or {}).items():
        tags[f"stark.tracker.{key}"] = str(value)
    run_id = content.get("mlflow_run_id") or (content.get("training") or {}).get("mlflow_run_id")
    if run_id:
        tags["stark.train_run_id"] = str(run_id)
    manifests = (config.get("data") or {}).get("manifests") or []
    if manifests:
        tags["stark.manifests"] = json.dumps(manifest_hashes(list(manifests), storage_cfg))
    if content.get("tuned"):
        tags["stark.tuned"] = json.dumps(content["tuned"], sort_keys=True, default=str)
    if eval_scores:
        tags["stark.eval.benchmark"] = str(benchmark)
        tags["stark.eval.split"] = str(split or "all")
        if data_hash:
            tags["stark.eval.data_hash"] = data_hash
        for key, value in eval_scores.items():
            tags[f"stark.eval.{key}"] = f"{value:.6f}"
    return tags


def register_checkpoint(checkpoint_path: str, content: dict, name: str, tracking_uri: str,
                        tags: dict[str, str], description: str = "", onnx_folder: str | None = None):
    """Save the pyfunc model (weights as a checkpoint artifact; with `onnx_folder`, a `stark export` folder
    as the artifact `onnx`) into a registry run and create a version with its tags and description in one
    call. Returns the ModelVersion.

    Through the client and the run's id alone: the model is saved to a local folder, uploaded as the
    run's `model` artifacts and registered from there, so no active run or process-wide URI is involved."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "video"), ColSpec("double", "x"), ColSpec("double", "y"),
                       ColSpec("double", "w"), ColSpec("double", "h")]),
        outputs=Schema([ColSpec("string", "video"), ColSpec("long", "frame"), ColSpec("double", "x"),
                        ColSpec("double", "y"), ColSpec("double", "w"), ColSpec("double", "h"),
                        ColSpec("double", "score")]))
    staging = tempfile.mkdtemp(prefix="stark-register-")
    try:
        # the artifact keeps its file name inside the model: a fixed one that loaders look for
        local = os.path.join(staging, "checkpoint.pt")
        shutil.copyfile(checkpoint_path, local)
        artifacts = {"checkpoint": local}
        if onnx_folder is not None:  # the graphs travel with the version: served without PyTorch
            artifacts["onnx"] = shutil.copytree(onnx_folder, os.path.join(staging, "onnx"))
        model_dir = os.path.join(staging, "model")
        mlflow.pyfunc.save_model(model_dir, python_model=MODEL_CODE, artifacts=artifacts,
                                 signature=signature, pip_requirements=["stark-platform", "torch", "mlflow", "pandas"])
        client = mlflow_client(tracking_uri)
        run_tags = {k: v for k, v in tags.items() if len(v) < 5000}
        run = client.create_run(experiment_id(client, EXPERIMENTS["register"], tracking_uri),
                                run_name=f"register-{name}", tags=run_tags)
        try:
            client.log_artifacts(run.info.run_id, model_dir, "model")
            try:
                client.create_registered_model(name)
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    raise
            version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                                  tags=tags, description=description or None)
        except BaseException:
            client.set_terminated(run.info.run_id, status="FAILED")
            raise
        client.set_terminated(run.info.run_id, status="FINISHED")
        return version
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- a lock that serialises promotions ------------------------------------------------------------
def _already_exists(exc: Exception) -> bool:
    """A create that lost to an existing name. The sqlite store reports a name that was deleted between its
    failed insert and its look-up of the holder as 'not found': lost as well."""
    text = str(exc)
    return any(s in text for s in ("RESOURCE_ALREADY_EXISTS", "already exists", "RESOURCE_DOES_NOT_EXIST",
                                   "not found"))


def _process_gone(holder: str) -> bool:
    """True when `holder` (host:pid:token) names a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


class PromotionLock:
    """Mutual exclusion through the registry itself: creating a registered model is atomic in the
    tracking store (its name is unique), so whoever creates `<name>.promotion-lock` holds the lock.

    The lock names its holder (`holder` = host:pid:token) and carries a heartbeat (`heartbeat_at`, wall
    clock) that a thread of the holder renews every lease/4 while it holds the lock. A lock is abandoned,
    and broken, when its heartbeat is older than `lease_s` (the holder's machine or the tracking server
    went away mid-promotion; hosts' clocks are assumed to agree well within a lease) or at once when its
    holder is a process of this host that no longer runs.

    Breaking is decided by a second atomic create, `<name>.promotion-lock.break.<token>`: of several
    waiters that find the same lock abandoned, only the one that creates that marker deletes it, after
    reading again that the lock still is that holder's, so a lock taken in the meantime is never deleted.
    A holder checks `still_held()` before it changes anything: a heartbeat that could not be renewed
    within the lease means someone may have broken the lock, and the holder must stop."""

    def __init__(self, client, model_name: str, lease_s: float, wait_s: float, poll_s: float = 0.5, log=None):
        self.client, self.lease_s, self.wait_s, self.poll_s = client, lease_s, wait_s, poll_s
        self.log = log or (lambda line: None)
        self.name = f"{model_name}.promotion-lock"
        self.token = uuid.uuid4().hex[:12]
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.token}"
        self._renewed = 0.0  # time.monotonic() of the last heartbeat the server took
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None

    def __enter__(self) -> "PromotionLock":
        deadline = time.monotonic() + self.wait_s
        waiting_on = None
        while True:
            if self._try_create():
                return self
            held = self._read()
            if held is not None:
                holder = held.get("holder", "?")
                if self._abandoned(held):
                    self.log(f"  breaking {self.name}: its holder {holder} is gone")
                    self._break(held)
                    continue
                if holder != waiting_on:
                    self.log(f"  waiting for {self.name}, held by {holder} (at most {self.wait_s:.0f}s)")
                    waiting_on = holder
            if time.monotonic() > deadline:
                raise RegistryError(f"another promotion holds {self.name} for longer than {self.wait_s:.0f}s")
            time.sleep(self.poll_s)

    def __exit__(self, *exc_info) -> None:
        from mlflow.exceptions import MlflowException

        self._stop.set()
        if self._heart is not None:
            self._heart.join()
        try:
            held = self._read()
            if held is not None and held.get("holder") == self.holder:
                self.client.delete_registered_model(self.name)
        except MlflowException:
            pass  # left behind: the next promotion breaks it, at once on this host, else after the lease
        except Exception:  # noqa: BLE001 - the server is not answering: the same
            pass

    def still_held(self) -> bool:
        """Whether this process may still act as the holder: its last heartbeat is within the lease and
        the lock still names it."""
        if time.monotonic() - self._renewed > self.lease_s * 0.75:
            return False
        held = self._read()
        return held is not None and held.get("holder") == self.holder

    # --- the pieces -----------------------------------------------------------------------------------
    def _try_create(self) -> bool:
        from mlflow.exceptions import MlflowException

        now = f"{time.time():.3f}"
        try:
            self.client.create_registered_model(
                self.name, tags={"holder": self.holder, "acquired_at": now, "heartbeat_at": now},
                description="Held while a `stark promote` or `stark rollback` runs; broken automatically "
                            "when its holder's heartbeat stops.")
        except MlflowException as exc:
            if not _already_exists(exc):
                raise
            return False
        self._renewed = time.monotonic()
        self._heart = threading.Thread(target=self._beat, name="promotion-lock-heartbeat", daemon=True)
        self._heart.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                held = self._read()
                if held is None or held.get("holder") != self.holder:
                    return  # broken by someone else: still_held() now says so
                self.client.set_registered_model_tag(self.name, "heartbeat_at", f"{time.time():.3f}")
                self._renewed = time.monotonic()
            except Exception:  # noqa: BLE001 - the server is not answering: try again next beat
                pass

    def _read(self) -> dict[str, str] | None:
        """The lock's tags, or None when nobody holds it."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
                return None
            raise

    def _abandoned(self, held: dict[str, str]) -> bool:
        beat = held.get("heartbeat_at") or held.get("acquired_at") or "0"
        try:
            age = time.time() - float(beat)
        except ValueError:
            age = float("inf")
        return age > self.lease_s or _process_gone(held.get("holder", ""))

    def _break(self, held: dict[str, str]) -> None:
        """Delete the abandoned lock `held`, unless another waiter is doing so or it changed hands."""
        from mlflow.exceptions import MlflowException

        token = held.get("holder", "").rpartition(":")[2] or "unnamed"
        marker = f"{self.name}.break.{token}"
        try:
            self.client.create_registered_model(marker, tags={"by": self.holder})
        except MlflowException as exc:
            if not _already_exists(exc):
                raise
            self._clear_stale_marker(marker)
            return  # another waiter breaks it
        try:
            now = self._read()
            if now is not None and now.get("holder") == held.get("holder"):
                self.client.delete_registered_model(self.name)
        finally:
            self.client.delete_registered_model(marker)

    def _clear_stale_marker(self, marker: str) -> None:
        """A breaker that died between its two deletes would block every later break: a marker older
        than a lease is removed."""
        from mlflow.exceptions import MlflowException

        try:
            made = self.client.get_registered_model(marker).creation_timestamp / 1000.0
            if time.time() - made > self.lease_s:
                self.client.delete_registered_model(marker)
        except MlflowException:
            pass  # gone already
