"""The platform's checkpoint: state_dicts and plain dicts only, readable with weights_only=True.

{
  "format": "stark-platform/1",
  "model": state_dict,               # our module names
  "config": {...},                   # the plain experiment config dict (at least its "model" section)
  "tracker": {...} | None,           # tuned tracker settings stored with the model
  ...                                # training state (optimizer, scheduler, step, epoch, sampler)
}
"""
from __future__ import annotations

import io
from typing import Any

import torch

from . import storage

CHECKPOINT_FORMAT = "stark-platform/1"


def is_platform_checkpoint(content: Any) -> bool:
    return isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (DDP keeps it in `.module`), or the model itself."""
    return getattr(model, "module", model)


def make_checkpoint(model: torch.nn.Module, config: dict, tracker: dict | None = None, **state: Any) -> dict:
    return {"format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(), "config": config, "tracker": tracker,
            **state}


def to_bytes(content: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def save_checkpoint(uri: str, content: dict, storage_cfg: storage.StorageConfig | None = None) -> None:
    """Atomically write a checkpoint to a local path or s3:// URI."""
    storage.write_bytes_atomic(uri, to_bytes(content), storage_cfg)


def read_checkpoint_bytes(data: bytes, source: str) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{source}: not a readable checkpoint: {exc}") from exc
