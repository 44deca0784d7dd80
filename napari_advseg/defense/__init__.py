"""Hardening a target against the attack: fine-tuning on generated attacks and its baselines.

The names below load on first use, so ``napari_advseg.defense.config`` (the
settings, no torch) can be imported alone, as the command line's parser does.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"HARDEN_METHODS": "config", "HardenConfig": "config", "harden_target": "driver",
            "hardening_events": "driver", "Hardener": "hardener", "check_hardenable": "hardener", "generator_path": "hardener",
            "resume_path": "hardener"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
