"""The shipped sample data: a phantom CT, its labels and trained networks, so every command has defaults."""

from __future__ import annotations

import os
from pathlib import Path

from napari_advseg.errors import AdvsegError

__all__ = ["SAMPLE_FILES", "sample_data_dir", "sample_file"]

SAMPLE_FILES = {
    "ct": "phantom_ct.nii.gz",
    "labels": "phantom_labels.nii.gz",
    "target": "unet.pt",
    "generator": "generator.pt",
}
"""File names inside the sample-data folder."""


def sample_data_dir() -> Path:
    """The shipped sample's folder (``$ADVSEG_SAMPLE_DATA`` overrides it).

    A wheel installs it inside the package, as ``napari_advseg/sample_data/``; a source checkout,
    and the editable install made from one, keep it at the repository's top level, ``sample_data/``
    (``pyproject.toml`` maps the one onto the other).
    """
    env = os.environ.get("ADVSEG_SAMPLE_DATA")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]
    installed, checkout = package / "sample_data", package.parent / "sample_data"
    if not installed.is_dir() and checkout.is_dir() and (package.parent / "pyproject.toml").is_file():
        return checkout
    return installed


def sample_file(kind: str) -> Path:
    """Path of a shipped sample file; a clear error when it is missing."""
    path = sample_data_dir() / SAMPLE_FILES[kind]
    if not path.is_file():
        raise AdvsegError(f"the shipped sample {kind} is missing ({path}); "
                          "rebuild the sample data with `advseg make-sample`")
    return path
