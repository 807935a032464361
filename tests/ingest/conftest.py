"""Source trees the importer specifications share: each layout generated once (small, seeded); a test that
breaks a file works on its own copy. And one local Ray for the package's ingests that run through it."""
from __future__ import annotations

import shutil

import pytest

from stark.platform.ingest.synthetic import write_demo_dataset

SMALL = dict(num_sequences=3, num_frames=30, size=(160, 120), num_test=1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(root, {layout: the written sequences by split}) with root/<layout> for every layout."""
    root = tmp_path_factory.mktemp("sources")
    written = {}
    for layout in ("got10k", "lasot", "trackingnet", "footage"):
        written[layout] = write_demo_dataset(str(root / layout), layout, seed=3, **SMALL)
    return root, written


@pytest.fixture
def copy_of(sources, tmp_path):
    """copy_of(layout) -> the path of a fresh copy of that layout's tree."""
    def copy(layout: str) -> str:
        target = str(tmp_path / layout)
        shutil.copytree(sources[0] / layout, target)
        return target
    return copy


@pytest.fixture(scope="package")
def ray_local():
    """A local Ray (2 CPUs) shared by every test of tests/ingest that ingests for real: started once, at
    the first test that asks for it, and shut down after the package."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
