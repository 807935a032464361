"""Load the released STARK checkpoints (`STARKS_ep0500.pth.tar`, `STARKST_ep0050.pth.tar`, ...).

A release file is a torch-saved dict whose 'net' entry is the network's state_dict; beside it sit
pickled objects of the official repo (settings, stats). Those are read with torch's weights-only
unpickler, which never runs code: each foreign class is bound to an inert stand-in that only
records the name, so the file loads without the official repo and nothing in it executes.
Globals that can only mean code execution (os.system, subprocess, builtins.eval, ...) stay
blocked by torch: such a file is refused with the offending name.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from stark.model.config import ModelConfig
from stark.model.stark import STARK, build_stark


class DroppedObject:
    """Stand-in for a class or function from the official repo; accepts and discards its state."""

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return f"<dropped {self.qualified_name}>"


def _stand_in(qualified_name: str) -> type:
    return type("Dropped", (DroppedObject,), {"qualified_name": qualified_name})


# Modules and builtins whose globals in a pickle can only mean "run this" (a shell, a subprocess, eval, an
# import); a release file's foreign objects are classes of the official repo (lib.*, ...), never these.
_CODE_MODULES = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
                 "marshal", "ctypes", "code", "pty", "commands", "multiprocessing", "webbrowser", "pdb", "timeit"}
_CODE_BUILTINS = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "open", "breakpoint", "input"}


def _runs_code(qualified_name: str) -> bool:
    module, _, name = qualified_name.rpartition(".")
    root = module.split(".")[0]
    return root in _CODE_MODULES or (root in ("builtins", "__builtin__") and name in _CODE_BUILTINS)


def read_release_file(path: str | Path) -> dict:
    """Read a release file's top-level dict without executing any code pickled in it."""
    path = Path(path)
    try:
        foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # not a zip checkpoint: let torch.load report it precisely below
        foreign = []
        reason = exc
    else:
        reason = None
    runs_code = [name for name in foreign if _runs_code(name)]
    if runs_code:
        raise ValueError(f"{path}: refused: its pickle asks to run code ({', '.join(runs_code[:3])}), which a "
                         f"checkpoint never needs; nothing in it was run. Use only files written by stark or the "
                         f"official STARK releases")
    stand_ins = [(_stand_in(name), name) for name in foreign]
    try:
        with torch.serialization.safe_globals(stand_ins):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = f" ({reason})" if reason else ""
        raise ValueError(f"{path}: cannot read as a STARK release file: {exc}{detail}") from exc
    if not isinstance(content, dict) or "net" not in content:
        raise ValueError(f"{path}: a STARK release file is a dict with a 'net' state_dict; "
                         f"found {type(content).__name__} with keys {list(content)[:8] if isinstance(content, dict) else '-'}")
    return content


# Official key -> our key. Everything not matched by a rule keeps its name (bottleneck, transformer).
_CORNER_BRANCH = {"tl": "top_left", "br": "bottom_right"}
_RULES: list[tuple[re.Pattern, callable]] = [
    (re.compile(r"^backbone\.0\.body\.(.*)$"), lambda m: f"backbone.body.{m[1]}"),
    (re.compile(r"^query_embed\.weight$"), lambda m: "target_query.weight"),
    # conv1..conv4 are Conv-BN-ReLU blocks (index 0 conv, 1 BN); conv5 is the final 1x1 conv.
    (re.compile(r"^box_head\.conv([1-4])_(tl|br)\.(\d+)\.(.*)$"),
     lambda m: f"box_head.{_CORNER_BRANCH[m[2]]}.{int(m[1]) - 1}.{m[3]}.{m[4]}"),
    (re.compile(r"^box_head\.conv5_(tl|br)\.(.*)$"), lambda m: f"box_head.{_CORNER_BRANCH[m[1]]}.4.{m[2]}"),
    (re.compile(r"^cls_head\.(.*)$"), lambda m: f"score_head.{m[1]}"),
]


def official_key_to_ours(key: str) -> str:
    key = key.removeprefix("module.")
    for pattern, rewrite in _RULES:
        match = pattern.match(key)
        if match:
            return rewrite(match)
    return key


def our_key_to_official(key: str) -> str:
    """Inverse of official_key_to_ours, used to write files in the official layout."""
    rules = [
        (r"^backbone\.body\.(.*)$", lambda m: f"backbone.0.body.{m[1]}"),
        (r"^target_query\.weight$", lambda m: "query_embed.weight"),
        (r"^box_head\.(top_left|bottom_right)\.([0-3])\.(\d+)\.(.*)$",
         lambda m: f"box_head.conv{int(m[2]) + 1}_{'tl' if m[1] == 'top_left' else 'br'}.{m[3]}.{m[4]}"),
        (r"^box_head\.(top_left|bottom_right)\.4\.(.*)$",
         lambda m: f"box_head.conv5_{'tl' if m[1] == 'top_left' else 'br'}.{m[2]}"),
        (r"^score_head\.(.*)$", lambda m: f"cls_head.{m[1]}"),
    ]
    for pattern, rewrite in rules:
        match = re.match(pattern, key)
        if match:
            return rewrite(match)
    return key


def official_state_dict_to_ours(net_state: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict:
    """Rename every official key; fail naming the keys that map nowhere or that the model lacks."""
    ours = model.state_dict()
    mapped = {official_key_to_ours(k): v for k, v in net_state.items()}
    # Counters are bookkeeping, not weights: tolerate their absence and ignore surplus ones.
    for key in [k for k in mapped if k.endswith("num_batches_tracked") and k not in ours]:
        del mapped[key]
    for key in [k for k in ours if k.endswith("num_batches_tracked") and k not in mapped]:
        mapped[key] = ours[key]
    unmapped = sorted(k for k in net_state if official_key_to_ours(k) not in ours
                      and not k.endswith("num_batches_tracked"))
    missing = sorted(our_key_to_official(k) for k in ours if k not in mapped)
    wrong_shape = sorted(f"{our_key_to_official(k)} {tuple(v.shape)} vs {tuple(ours[k].shape)}"
                         for k, v in mapped.items() if k in ours and v.shape != ours[k].shape)
    if unmapped or missing or wrong_shape:
        hint = ""
        has_score = any(k.startswith("cls_head.") for k in net_state)
        if has_score != ("score_head.layers.0.weight" in ours):
            hint = f" (the file is STARK-{'ST' if has_score else 'S'}: use a matching preset)"
        raise ValueError(
            f"{source}: official checkpoint does not match the configured network{hint}. "
            f"Unmapped keys in the file: {unmapped[:10]} ({len(unmapped)}); "
            f"keys the network needs but the file lacks: {missing[:10]} ({len(missing)}); "
            f"shape mismatches: {wrong_shape[:5]} ({len(wrong_shape)})")
    return {k: v for k, v in mapped.items() if k in ours}


def load_official_checkpoint(path: str | Path, cfg: ModelConfig) -> STARK:
    """Build the network described by cfg and fill it with a release file's weights."""
    content = read_release_file(path)
    model = build_stark(cfg)
    model.load_state_dict(official_state_dict_to_ours(content["net"], model, str(path)))
    return model.eval()


def is_release_file(content: dict) -> bool:
    return isinstance(content, dict) and "net" in content and isinstance(content["net"], dict)
