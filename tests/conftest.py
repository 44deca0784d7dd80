"""Shared fixtures: tiny targets and data so the suite stays fast on 2 CPU cores.

Every test, and every process a test starts, computes on one CPU thread: when another job keeps the
cores busy, torch's OpenMP threads spin waiting for each other and a training step takes many times
longer than on one thread. ``OMP_NUM_THREADS`` set before the run wins for the child processes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads OpenMP; inherited by child processes
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"


@pytest.fixture(autouse=True)
def _one_thread_each():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One CPU thread for the test (every test has it already; kept for the tests that name it)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_ct() -> Path:
    """The real abdominal CT of ../shared/data; the test is skipped where it is absent."""
    if not (SHARED_DATA / "ct.nii.gz").is_file():
        pytest.skip("../shared/data/abdomen_ct is not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny phantom (CT + labels arrays, voxels of 5 x 3 x 3 mm) and a tiny target checkpoint (widget tests)."""
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.models.target_files import save_target
    from napari_advseg.models.unet import UNet2D

    folder = tmp_path_factory.mktemp("widget")
    phantom = make_phantom(1, (8, 64, 64), (5.0, 3.0, 3.0))
    torch.manual_seed(0)
    target = folder / "unet.pt"
    save_target(target, UNet2D(base_channels=4, depth=2), normalisation={"mode": "zscore"})
    return {"hu": phantom.hu.astype(np.float32), "labels": phantom.labels, "target": target, "folder": folder}


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """A tiny phantom CT + labels as NIfTI and a small untrained target checkpoint.

    Returns a dict of paths: ``ct``, ``labels``, ``target``, ``generator`` (one training step).
    """
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.models.target_files import save_target
    from napari_advseg.models.unet import UNet2D
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti_save import save_volume

    folder = tmp_path_factory.mktemp("tiny")
    phantom = make_phantom(3, (9, 64, 64))
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    paths = {"ct": folder / "ct.nii.gz", "labels": folder / "labels.nii.gz", "target": folder / "unet.pt"}
    save_volume(phantom.hu, volume, paths["ct"], dtype=np.int16)
    save_volume(phantom.labels, volume, paths["labels"], dtype=np.uint8)
    torch.manual_seed(0)
    save_target(paths["target"], UNet2D(base_channels=4, depth=2), normalisation={"mode": "zscore"})

    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target
    from napari_advseg.attack.trainer import AttackTrainer

    target = load_target(paths["target"], "cpu")
    case = load_case(paths["ct"], paths["labels"], target.normalisation)
    trainer = AttackTrainer(AttackConfig(steps=1, batch_size=2, critic_steps=1), target, case.images, case.labels,
                            "cpu")
    paths["generator"] = folder / "generator.pt"
    list(trainer.run(checkpoint_path=paths["generator"]))
    return paths
