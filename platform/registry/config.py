"""Typed configuration of `registry`: the registered model name, aliases, and the promotion gate."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RegistryConfig:
    model_name: str = "stark"  # registered model name
    champion_alias: str = "champion"
    previous_alias: str = "previous-champion"
    metric: str = "auto"  # auto: AO on GOT-10k data, success AUC otherwise
    # A candidate must beat the static box (the first frame's box on every frame) and, when there is one, the
    # champion: each by this much in mean per-sequence metric ...
    margin: float = 0.01
    confidence: float = 0.95  # ... with a paired bootstrap putting P(mean difference > 0) at least here
    bootstrap_samples: int = 10000
    min_first_metric: float = 0.0  # optional absolute floor a first model must also reach (0 = only the static box)
    # the promotion lock's holder renews a heartbeat every lease/4; a lock whose heartbeat is older than this
    # (or whose holder is a process of this host that no longer runs) is taken as abandoned and broken
    lock_lease_s: float = 60.0
    lock_wait_s: float = 1800.0  # how long a promotion waits for another one to finish
    seed: int = 0

    def validate(self) -> None:
        if not self.model_name:
            raise ValueError("registry.model_name must not be empty")
        if self.champion_alias == self.previous_alias:
            raise ValueError("registry.champion_alias and registry.previous_alias must differ")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError("registry.confidence must be in [0.5, 1)")
        if self.margin < 0 or self.bootstrap_samples < 100:
            raise ValueError("registry.margin must be >= 0 and registry.bootstrap_samples >= 100")
        if self.metric not in ("auto", "ao", "auc"):
            raise ValueError(f"registry.metric: {self.metric!r} is not auto, ao or auc")
        if self.lock_lease_s < 1.0 or self.lock_wait_s < 0:
            raise ValueError("registry.lock_lease_s must be >= 1 and registry.lock_wait_s >= 0")
