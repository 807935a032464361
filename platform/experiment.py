"""Experiment configuration: typed dataclasses loaded from YAML, with `a.b=value` overrides.

Validation happens at load time: an unknown key, a wrong type or a bad value raises a ConfigError
naming the dotted key and the file it came from, before any work starts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..model.config import ModelConfig
from .data.config import DataConfig
from .errors import BadInputError
from .evaluate.config import EvalConfig
from .home import Home
from .ingest.config import IngestConfig
from .mlflow_runs import MlflowConfig
from .pipeline.config import PipelineConfig
from .registry.config import RegistryConfig
from .storage import StorageConfig
from .track.config import TrackerChoice, TrackerSettings
from .train.config import TrainConfig
from .tune.config import TuneConfig


class ConfigError(BadInputError):
    """A config file, preset or override that does not load or validate; the message names the key."""


@dataclass
class ExperimentConfig:
    """Everything one job needs; each section is read only by the part it configures."""

    name: str = "stark"  # run name; storage and MLflow paths derive from it
    # the folder the platform keeps its state in (platform/home.py); None: $STARK_HOME, else ~/.stark
    home: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    # dotted keys the command line set (`a.b=value`), recorded by load_config; not a YAML key, never stored
    command_line: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    @property
    def tracker_choice(self) -> TrackerChoice:
        """The tracker section with the keys the command line set: what resolves each model's settings."""
        prefix = "tracker."
        return TrackerChoice(self.tracker, frozenset(k[len(prefix):] for k in self.command_line if k.startswith(prefix)))

    def validate(self) -> None:
        self.model.validate()
        self.storage.validate()
        self.ingest.validate()
        self.data.validate()
        self.tracker.validate()
        self.evaluate.validate()
        self.tune.validate()
        self.registry.validate()
        self.pipeline.validate()
        self.train.validate()
        self.mlflow.validate()


# --- presets --------------------------------------------------------------------------------------
def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("stark.configs").iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a shipped preset (`stark_st50`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = resources.files("stark.configs") / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    raise ConfigError(f"config {name_or_path!r}: no such file, and not a preset (presets: {', '.join(preset_names())})")


# --- loading --------------------------------------------------------------------------------------
def load_config(name_or_path: str | None = None, overrides: list[str] | None = None,
                schema: type = ExperimentConfig, in_home: bool = True) -> Any:
    """Read a YAML file (or preset name), apply `a.b=value` overrides, build and validate the dataclasses.
    in_home=False leaves the locations the file leaves unset unset (`place_in_home` is not run): the
    config as written, for a record another machine reads."""
    raw: dict = {}
    source = "<defaults>"
    if name_or_path:
        path = resolve_config_path(name_or_path)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not a YAML text file (byte {exc.start} is not UTF-8 text)") from exc
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    for item in overrides or []:
        apply_override(raw, item)
    cfg = from_dict(schema, raw, source=source)
    if overrides and isinstance(cfg, ExperimentConfig):
        cfg.command_line = frozenset(item.split("=", 1)[0].strip() for item in overrides)
    try:
        cfg.validate()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if isinstance(cfg, ExperimentConfig) and in_home:
        place_in_home(cfg)
    return cfg


def place_in_home(cfg: ExperimentConfig) -> None:
    """Resolve the home once and give every location left unset its place there (platform/home.py), so
    a job reads concrete paths and a config written back (the pipeline's) names them. The MLflow store
    stays unset here: $MLFLOW_TRACKING_URI is read when a job connects (mlflow_runs.resolve_tracking_uri)."""
    home = Home.resolve(cfg.home)
    cfg.home = str(home.root)
    cfg.train.storage_path = cfg.train.storage_path or home.runs
    cfg.tune.storage_path = cfg.tune.storage_path or home.tune
    cfg.evaluate.output = cfg.evaluate.output or home.eval
    cfg.pipeline.workdir = cfg.pipeline.workdir or home.pipeline(cfg.name)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def apply_override(raw: dict, item: str) -> None:
    """`model.transformer.d_model=64` -> raw['model']['transformer']['d_model'] = 64 (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, data: Any, source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass `cls` from plain data, checking every key and type."""
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} (known in {where}: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(hints[name], value, source, f"{prefix}{name}") for name, value in data.items()}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return [_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads `1e-3` (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {key}: unsupported config type {tp}")


def to_dict(cfg: Any) -> dict:
    """The plain-dict form stored in checkpoints and logged as params (what YAML can set: no
    `init=False` fields such as ExperimentConfig.command_line)."""
    data = dataclasses.asdict(cfg)
    for f in dataclasses.fields(cfg):
        if not f.init:
            data.pop(f.name)
    return data


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
