"""Starting (or joining) Ray the same way in every job."""
from __future__ import annotations

import os

from .console import apply_routing


def training_cpu_slots(cfg) -> int:
    """Logical CPUs a training stage occupies: its workers, the stream's decode workers, its read task."""
    return int(cfg.train.num_workers * cfg.train.cpus_per_worker) + cfg.data.decode_actors + 1


def init_ray(min_cpus: int = 0, **kwargs) -> None:
    """Join the cluster that RAY_ADDRESS names, or start a local Ray.

    A local Ray gets at least `min_cpus` logical CPUs. Ray's CPUs are scheduling slots, not cores:
    on a 2-core laptop the training workers, the stream's read task and its decode workers must all
    be placeable at once (they then share the cores), or the stream waits forever for a slot.
    """
    import ray

    if ray.is_initialized():
        return
    apply_routing()  # `import ray` put a terminal handler on the "ray" logger: ray.init's own lines go to the log
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, min_cpus), **kwargs)
    apply_routing()  # and Ray's driver-side printer of worker lines is replaced once it exists
