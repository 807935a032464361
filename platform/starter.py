"""Starter checkpoints shipped with the package: small models the project pretrained on its own
generated data (no download), for fine-tuning on a CPU budget. `starter:NAME` names one anywhere a
model argument is accepted (`train.init_from`, `--model`).

Each `configs/starters/NAME.pt` has a `NAME.json` beside it: its sha256, the exact command that made it,
the MLflow run that tracked it, and the recipe config. A file whose bytes do not match is refused.
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

SCHEME = "starter:"


def starter_folder() -> Path:
    return Path(str(resources.files("stark.configs") / "starters"))


def starter_names() -> list[str]:
    folder = starter_folder()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def starter_record(name: str) -> dict:
    record = starter_folder() / f"{name}.json"
    if not record.is_file():
        raise ValueError(f"model '{SCHEME}{name}': no such starter (shipped: {', '.join(starter_names()) or 'none'})")
    return json.loads(record.read_text())


def resolve_starter(spec: str) -> str:
    """`starter:NAME` -> the path of the shipped file, after checking its sha256; any other spec unchanged."""
    if not spec.startswith(SCHEME):
        return spec
    name = spec[len(SCHEME):]
    record = starter_record(name)
    path = starter_folder() / record["file"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != record["sha256"]:
        raise ValueError(f"model {spec!r}: {path} has sha256 {digest}, its record says {record['sha256']} "
                         f"(re-make it with: {record['command']})")
    return str(path)
