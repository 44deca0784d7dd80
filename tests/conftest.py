"""Shared fixtures: tiny targets and data so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def shared_ct() -> Path:
    """The real abdominal CT of ../shared/data; the test is skipped where it is absent."""
    if not (SHARED_DATA / "ct.nii.gz").is_file():
        pytest.skip("../shared/data/abdomen_ct is not present on this machine")
    return SHARED_DATA
