"""Turn a model argument into a ready network: a platform checkpoint, an official STARK release file,
or an MLflow model URI (`models:/stark@champion`, `models:/stark/3`, `runs:/<id>/model`), fetched from
the tracking URI the caller names (never MLflow's process-wide one)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..model.config import BackboneConfig, HeadConfig, ModelConfig, TransformerConfig
from ..model.official import is_release_file, official_state_dict_to_ours, read_release_file
from ..model.stark import STARK, build_stark
from . import storage
from .errors import BadInputError
from .checkpoint import is_platform_checkpoint, read_checkpoint_bytes
from .experiment import from_dict
from .mlflow_runs import parse_model_uri, resolve_version  # noqa: F401 - also this module's names for them
from .starter import resolve_starter

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
CHECKPOINT_FILE = "checkpoint.pt"  # name of the platform checkpoint inside an MLflow model's artifacts
# What an official release file stores, in effect: it was trained and published with the official
# crops and map-back, so tracking with it uses them unless `tracker.crop_rule=...` is given.
OFFICIAL_TRACKER_SETTINGS = {"crop_rule": "official"}


@dataclass
class LoadedModel:
    model: STARK
    model_cfg: ModelConfig
    tracker: dict | None  # tracker settings stored with the model (tuned; official files: crop_rule), if any
    source: str  # what the user gave
    kind: str  # "platform", "official" or "mlflow"
    checkpoint: dict | None = None  # the platform checkpoint content, when there is one
    artifacts: Path | None = None  # MLflow: the downloaded model folder (a registered version's ONNX graphs too)


def load_model(spec: str, base_cfg: ModelConfig | None = None,
               storage_cfg: storage.StorageConfig | None = None, tracking_uri: str | None = None) -> LoadedModel:
    """Load any accepted model argument. base_cfg supplies what an official file cannot tell
    (attention heads, crop sizes and factors); everything else is read from the weights. tracking_uri:
    the MLflow store an MLflow URI is read from (a job passes its resolve_tracking_uri)."""
    spec = resolve_starter(spec)
    if spec.startswith(MLFLOW_SCHEMES):
        if not tracking_uri:
            raise ValueError(f"model {spec!r}: an MLflow URI needs the tracking URI to read it from")
        return _load_from_mlflow(spec, base_cfg, tracking_uri)
    if not storage.is_s3(spec) and not Path(spec).is_file():
        raise ValueError(f"model {spec!r}: no such file (expected a checkpoint path, an s3:// URI, "
                         f"or an MLflow URI like models:/stark@champion)")
    if storage.is_s3(spec):
        content = read_checkpoint_bytes(storage.read_bytes(spec, storage_cfg), spec)
    else:
        content = read_local_model_file(spec)
    return from_content(content, spec, base_cfg)


def read_local_model_file(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # Official release files pickle foreign objects beside the weights; read those inertly.
        return read_release_file(path)


def from_content(content: dict, source: str, base_cfg: ModelConfig | None = None, kind: str | None = None
                 ) -> LoadedModel:
    if is_platform_checkpoint(content):
        try:
            model_cfg = from_dict(ModelConfig, content["config"]["model"], source=source, prefix="model.")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: checkpoint has no model config") from exc
        model = build_stark(dataclasses.replace(model_cfg, backbone=dataclasses.replace(model_cfg.backbone,
                                                                                         weights=None)))
        _load_state(model, content["model"], source)
        return LoadedModel(model.eval(), model_cfg, content.get("tracker"), source, kind or "platform", content)
    if is_release_file(content):
        model_cfg = infer_official_config(content["net"], base_cfg or ModelConfig())
        model = build_stark(model_cfg)
        model.load_state_dict(official_state_dict_to_ours(content["net"], model, source))
        return LoadedModel(model.eval(), model_cfg, dict(OFFICIAL_TRACKER_SETTINGS), source, kind or "official")
    keys = list(content)[:8] if isinstance(content, dict) else type(content).__name__
    raise ValueError(f"{source}: neither a stark-platform checkpoint nor an official STARK file ({keys})")


def _load_state(model: STARK, state: dict, source: str) -> None:
    ours = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(ours[k].shape)}" for k, v in state.items()
             if k in ours and hasattr(v, "shape") and v.shape != ours[k].shape]
    if wrong:
        raise BadInputError(f"{source}: its weights are of another architecture than its stored model config "
                            f"({len(wrong)} tensor(s) of another shape, e.g. {'; '.join(wrong[:3])}): the file was "
                            f"edited or written by another version; use a checkpoint written by `stark train`")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{source}: weights do not fit the stored config: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


def infer_official_config(net: dict[str, torch.Tensor], base: ModelConfig) -> ModelConfig:
    """Read the architecture off an official state_dict; sizes it cannot show come from `base`."""
    def count(pattern: str) -> int:
        found = {int(m[1]) for k in net if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    layer3_blocks = count(r"backbone\.0\.body\.layer3\.(\d+)\.")
    bottleneck_blocks = "backbone.0.body.layer1.0.conv3.weight" in net
    names = {(True, 6): "resnet50", (True, 23): "resnet101", (False, 6): "resnet34", (False, 2): "resnet18"}
    name = names.get((bottleneck_blocks, layer3_blocks))
    if name is None or "bottleneck.weight" not in net:
        raise ValueError("not an official STARK state_dict: cannot recognise its ResNet backbone "
                         f"(layer3 blocks: {layer3_blocks})")
    d_model = net["bottleneck.weight"].shape[0]
    score_layers = count(r"cls_head\.layers\.(\d+)\.")
    return ModelConfig(
        variant="ST" if score_layers else "S",
        # every official network has frozen BatchNorm and a strided layer3 (BackboneConfig's defaults),
        # whatever the base preset chose for its own training
        backbone=BackboneConfig(name=name, weights=None, trainable_stages=list(base.backbone.trainable_stages)),
        transformer=TransformerConfig(
            d_model=d_model, nheads=base.transformer.nheads,
            enc_layers=count(r"transformer\.encoder\.layers\.(\d+)\."),
            dec_layers=count(r"transformer\.decoder\.layers\.(\d+)\."),
            dim_feedforward=net["transformer.encoder.layers.0.linear1.weight"].shape[0],
            dropout=base.transformer.dropout),
        head=HeadConfig(corner_channels=net["box_head.conv1_tl.0.weight"].shape[0],
                        score_layers=score_layers or base.head.score_layers),
        template_size=base.template_size, search_size=base.search_size,
        template_factor=base.template_factor, search_factor=base.search_factor,
    )


def _load_from_mlflow(spec: str, base_cfg, tracking_uri: str) -> LoadedModel:
    import mlflow

    try:
        artifact_uri = spec
        if spec.startswith("models:/"):
            # MLflow's models:/ artifact repository asks the process-wide registry; ask the named one here
            client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            name = parse_model_uri(spec)[0]
            artifact_uri = client.get_model_version_download_uri(name, resolve_version(client, spec))
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=tracking_uri))
    except Exception as exc:
        hint = ("; the platform's registry is in its home (platform/home.py): check $STARK_HOME / home=..., "
                "or $MLFLOW_TRACKING_URI" if spec.startswith("models:/") else "")
        raise ValueError(f"model {spec!r}: cannot fetch it from MLflow at {tracking_uri}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}{hint}") from exc
    found = sorted(local.rglob(CHECKPOINT_FILE)) if local.is_dir() else [local]
    if not found:
        raise ValueError(f"model {spec!r}: the MLflow model holds no {CHECKPOINT_FILE}")
    loaded = from_content(read_local_model_file(str(found[0])), spec, base_cfg, kind="mlflow")
    return dataclasses.replace(loaded, artifacts=local if local.is_dir() else local.parent)

