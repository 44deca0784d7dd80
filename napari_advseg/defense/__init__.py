"""Hardening a target against the attack: fine-tuning on generated attacks and its baselines."""

from napari_advseg.defense.config import HARDEN_METHODS, HardenConfig
from napari_advseg.defense.driver import harden_target, hardening_events
from napari_advseg.defense.hardener import Hardener, generator_path, resume_path

__all__ = ["HARDEN_METHODS", "HardenConfig", "Hardener", "harden_target", "hardening_events", "generator_path",
           "resume_path"]
