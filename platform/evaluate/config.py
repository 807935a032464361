"""Typed configuration of `evaluate`: which benchmark, how sequences are batched and spread over Ray workers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EvalConfig:
    benchmark: str | None = None  # got10k | lasot | trackingnet | footage; None = the data's own
    batch_size: int = 8  # sequences per batched forward
    num_workers: int = 1  # Ray actors, each holding the model once; 0 = in this process
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    device: str = "cpu"  # "cuda" on GPU workers
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = True  # NHWC activations: faster oneDNN convolutions on CPU, and on GPU under AMP
    # torch: the network on PyTorch; onnx: on ONNX Runtime (`stark export`'s graphs, CPU provider; CUDA with
    # device "cuda"). The tracker loop is the same; amp and channels_last apply to torch only.
    engine: Literal["torch", "onnx"] = "torch"
    # local folder for result files, tables and plots; each model and data set gets its own
    # <output>/<model>/<data> inside it (`stark evaluate --out DIR` writes into DIR itself). None: <home>/eval
    output: str | None = None
    max_sequences: int | None = None  # evaluate only the first N sequences (quick checks)
    absent_as_failure: bool | None = None  # None = the benchmark's convention

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError("evaluate.batch_size must be >= 1")
        if self.num_workers < 0:
            raise ValueError("evaluate.num_workers must be >= 0")
        if self.engine not in ("torch", "onnx"):
            raise ValueError(f"evaluate.engine: {self.engine!r} is not torch or onnx")
        if self.engine == "onnx" and self.amp != "none":
            raise ValueError("evaluate.amp applies to the torch engine; an fp16 ONNX graph comes from `stark export --fp16`")
        if self.benchmark not in (None, "got10k", "lasot", "trackingnet", "footage"):
            raise ValueError(f"evaluate.benchmark: {self.benchmark!r} is not got10k, lasot, trackingnet or footage")
