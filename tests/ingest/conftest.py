"""Source trees the importer specifications share: each layout generated once (small, seeded); a test that
breaks a file works on its own copy."""
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
