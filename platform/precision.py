"""Mixed precision: the `amp` setting of train and evaluate, as the dtype autocast runs in."""
from __future__ import annotations

import torch

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
