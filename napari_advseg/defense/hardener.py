"""Hardening a target: fine-tune the segmentation network on a mix of clean and adversarial slices.

:class:`Hardener` holds everything one hardening run needs to continue
exactly (the network being fine-tuned, its optimiser, the random stream, and
with ``rounds > 1`` the generator's whole training state), and writes it in
two files, both atomically:

- ``out`` (e.g. ``hardened.pt``): a project target checkpoint like
  ``advseg train-target`` writes, loadable anywhere a target is; its
  ``metrics["hardening"]`` holds the settings, the original network's and the
  generator's SHA-256, the step and whether the run is complete. An nnU-Net
  folder or MONAI bundle target is written as a folder of its own kind
  instead (``out`` without ``.pt``, :mod:`~napari_advseg.defense.folders`),
  with the same metrics in its ``advseg_metrics.json``;
- ``<out stem>.resume.pt``: the state to continue from (``--resume``).

With ``rounds > 1`` the generator of the last round is written beside them
as ``<out stem>.generator.pt`` (a generator checkpoint).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_advseg.defense.config import HardenConfig
from napari_advseg.attack.checkpoint import generator_from_state
from napari_advseg.defense.folders import FOLDER_MODELS, check_folder_output, save_hardened_folder
from napari_advseg.defense.sources import adversarial_part, batch_dice, load_generator_state
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError
from napari_advseg.io.atomic import load_torch_dict, save_torch
from napari_advseg.models.folder_targets import weights_sha256
from napari_advseg.models.target import Target, is_volumetric, make_target
from napari_advseg.models.unet import UNet2D
from napari_advseg.models.unet_training import soft_dice_loss

STATE_FORMAT = "napari-advseg-hardening"


def resume_path(out: str | os.PathLike) -> Path:
    """``hardened.pt`` -> ``hardened.resume.pt``: where the state to continue from is kept."""
    out = Path(out)
    return out.with_name(out.stem + ".resume.pt")


def generator_path(out: str | os.PathLike) -> Path:
    """``hardened.pt`` -> ``hardened.generator.pt``: the last round's generator (``rounds > 1``)."""
    out = Path(out)
    return out.with_name(out.stem + ".generator.pt")


def _file_identity(path: str | os.PathLike | None) -> dict[str, Any] | None:
    if path is None:
        return None
    path = Path(path)
    return {"path": str(path), "sha256": weights_sha256(path)}


def check_hardenable(target: Target) -> None:
    """Raise :class:`AdvsegError` (one line naming the target) for a target that cannot be hardened.

    Hardened are a project U-Net checkpoint and 2D nnU-Net folders and MONAI
    bundles; a 3D network (a slab target) is refused, as hardening fine-tunes
    on batches of single slices.
    """
    if is_volumetric(target):
        raise AdvsegError(f"{target.name}: is a 3D network (a slab target); hardening fine-tunes 2D targets on "
                          "batches of single slices, so a 3D one is not hardened")
    if getattr(target, "sliding_window", None) is not None:
        raise AdvsegError(f"{target.name}: is run by a declared sliding window; hardening fine-tunes a project "
                          "U-Net checkpoint, an nnU-Net folder or a MONAI bundle as its files run it, so give "
                          "--sliding-window none (or harden the bundle the network came from)")
    if not isinstance(target.model, (UNet2D, *FOLDER_MODELS)):
        raise AdvsegError(f"{target.name}: only a project U-Net checkpoint, an nnU-Net folder or a MONAI bundle "
                          f"can be hardened (this target is a {target.kind} {type(target.model).__name__})")


class Hardener:
    """Fine-tune a copy of ``target``'s network against attacks (the target itself is not changed).

    Parameters
    ----------
    config : HardenConfig
    target : Target
        The network to harden: a project checkpoint (a :class:`UNet2D`), an
        nnU-Net ``2d`` folder or a 2D MONAI bundle (every fold of an nnU-Net
        ensemble is fine-tuned through the ensemble's averaged logits).
    images, labels : (N, H, W) arrays
        Training slices (normalised as the target expects) and their reference labels.
    generator : path or dict, optional
        Generator checkpoint of the ``generator`` method (a path, or the
        checkpoint's dictionary itself).
    device : str or torch.device
    """

    def __init__(self, config: HardenConfig, target: Target, images, labels, *,
                 generator: str | os.PathLike | dict | None = None, device: str | torch.device = "auto"):
        check_hardenable(target)
        if config.needs_generator and generator is None:
            raise AdvsegError("the 'generator' hardening method needs a generator checkpoint (--generator)")
        self.config = config
        self.device = resolve_device(device)
        self.original = target
        self.class_names = tuple(target.class_names)
        self.model: nn.Module = copy.deepcopy(target.model).to(self.device)
        for parameter in self.model.parameters():
            parameter.requires_grad_(True)
        self.images = torch.as_tensor(np.asarray(images, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels)).long()
        if self.images.ndim != 3 or tuple(self.labels.shape) != tuple(self.images.shape):
            raise AdvsegError(f"hardening needs (N, H, W) slices with labels of the same shape, got "
                              f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}")
        if not torch.isfinite(self.images).all():
            raise AdvsegError("training images contain NaN or infinite values")
        with_organs = (self.labels > 0).flatten(1).any(dim=1)
        self.pool = torch.nonzero(with_organs).flatten()
        if self.pool.numel() == 0:
            raise AdvsegError("no training slice holds an organ: nothing to harden on")
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step_count = 0
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0
        self.generator_source = None
        self.generator_state = None
        if config.needs_generator:
            self.generator_source = None if isinstance(generator, dict) else _file_identity(generator)
            self.generator_state = load_generator_state(generator, target)
        self.generator_rounds = 1  # rounds whose generator is ready (round 0 uses the given one)
        self._generator = None
        self._generator_trainer = None
        self._generator_end: int | None = None
        self._refresh_generator()

    # ------------------------------------------------------------------ pieces
    def _refresh_generator(self) -> None:
        if self.generator_state is not None:
            self._generator = generator_from_state(self.generator_state, self.device)

    def current_target(self, frozen_copy: bool = True) -> Target:
        """The network as it is now, as a :class:`Target` (a frozen copy, or the live module)."""
        if frozen_copy:
            model = copy.deepcopy(self.model)
            model.eval()
            return make_target(model, class_names=self.class_names, normalisation=self.original.normalisation,
                               device=self.device, validate=False)
        return Target(self.model, self.class_names, self.original.normalisation, "memory", None, self.device)

    def _train_mode(self) -> None:
        self.model.train()
        if self.config.freeze_batchnorm:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(self.pool.numel(), (self.config.batch_size,), generator=self.rng)
        idx = self.pool[pick]
        return self.images[idx][:, None].to(self.device), self.labels[idx].to(self.device)

    # ------------------------------------------------------------------ the adversarial game
    def _generator_round_due(self) -> bool:
        return (self.config.needs_generator and self.config.generator_steps > 0
                and self.step_count < self.config.steps
                and self.config.round_of(self.step_count) >= self.generator_rounds)

    def _train_generator(self) -> Iterator[dict[str, Any]]:
        """Continue the generator against the network as it is now (``generator_steps`` steps)."""
        from napari_advseg.attack.config import AttackConfig
        from napari_advseg.attack.trainer import AttackTrainer

        state = self.generator_state
        if self._generator_end is None:
            self._generator_end = int(state["step"]) + self.config.generator_steps
        config = AttackConfig.from_dict(state["config"]).replace(steps=self._generator_end)
        trainer = AttackTrainer(config, self.current_target(), self.images.numpy(), self.labels.numpy(), self.device)
        trainer.load_state_dict(state)
        self._generator_trainer = trainer
        try:
            for metrics in trainer.run():
                yield {"kind": "generator", "round": self.generator_rounds, "step": self.step_count,
                       "total": self.config.steps, "generator_step": trainer.step_count,
                       "generator_total": self._generator_end, "metrics": metrics}
        finally:
            self.generator_state = trainer.state_dict()
            self._generator_trainer = None
        self._generator_end = None
        self.generator_rounds += 1
        self._refresh_generator()

    # ------------------------------------------------------------------ one step
    def step(self) -> dict[str, float]:
        """One fine-tuning step; its metrics (losses and the batch's Dice, clean and adversarial part)."""
        start = time.perf_counter()
        config = self.config
        x, y = self._batch()
        rho = config.rho_low + (config.rho_high - config.rho_low) * float(torch.rand((), generator=self.rng))
        n_adv = 0 if config.method == "clean" else int(round(config.mix * x.shape[0]))
        if n_adv:
            self.model.eval()  # attacks see the network as it predicts
            result = adversarial_part(config, x[:n_adv], y[:n_adv], self.current_target(frozen_copy=False), rho,
                                      self.rng, self._generator)
            x = torch.cat([result.adversarial.detach(), x[n_adv:]])
            y = torch.cat([result.warped_labels.long(), y[n_adv:]])
        self._train_mode()
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        dice_loss = soft_dice_loss(logits, y)
        loss = ce + dice_loss
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        predicted = logits.detach().argmax(dim=1)
        self.step_count += 1
        seconds = time.perf_counter() - start
        self.seconds += seconds
        metrics = {"step": float(self.step_count), "loss": float(loss.detach()), "ce": float(ce.detach()),
                   "dice_loss": float(dice_loss.detach()), "rho": rho if n_adv else math.nan,
                   "dice_adversarial": (batch_dice(predicted[:n_adv], y[:n_adv], self.class_names)
                                        if n_adv else math.nan),
                   "dice_clean": (batch_dice(predicted[n_adv:], y[n_adv:], self.class_names)
                                  if n_adv < len(y) else math.nan),
                   "round": float(config.round_of(self.step_count - 1)), "seconds": seconds}
        self.history.append(metrics)
        return metrics

    def run(self) -> Iterator[dict[str, Any]]:
        """Steps (and generator rounds) up to ``config.steps``, yielding an event after each."""
        while self.step_count < self.config.steps:
            if self._generator_round_due():
                yield from self._train_generator()
                continue
            metrics = self.step()
            yield {"kind": "step", "step": self.step_count, "total": self.config.steps, "metrics": metrics}

    @property
    def complete(self) -> bool:
        return self.step_count >= self.config.steps

    # ------------------------------------------------------------------ files
    def hardening_record(self) -> dict[str, Any]:
        """What ``metrics["hardening"]`` of the hardened checkpoint holds."""
        last = {k: v for k, v in (self.history[-1] if self.history else {}).items() if not math.isnan(v)}
        return {"config": self.config.to_dict(), "original": _file_identity(self.original.path),
                "generator": self.generator_source, "step": self.step_count, "complete": self.complete,
                "generator_rounds": self.generator_rounds, "train_seconds": self.seconds,
                "train_slices": int(self.images.shape[0]), "last_step": last}

    def state_dict(self) -> dict[str, Any]:
        generator_state = self.generator_state
        if self._generator_trainer is not None:
            generator_state = self._generator_trainer.state_dict()
        return {"format": STATE_FORMAT, "version": 1, "config": self.config.to_dict(),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimiser": self.optimiser.state_dict(), "step": self.step_count, "rng": self.rng.get_state(),
                "history": [dict(m) for m in self.history], "seconds": self.seconds,
                "original": _file_identity(self.original.path), "generator_source": self.generator_source,
                "generator_state": generator_state, "generator_rounds": self.generator_rounds,
                "generator_end": self._generator_end,
                "data": {"slices": int(self.images.shape[0]), "height": int(self.images.shape[1]),
                         "width": int(self.images.shape[2])}}

    def save(self, out: str | os.PathLike, metrics: dict[str, Any] | None = None) -> Path:
        """Write the hardened checkpoint, the resume state and (rounds > 1) the last generator."""
        from napari_advseg.models.target_files import save_target

        out = Path(out)
        if isinstance(self.model, FOLDER_MODELS):
            check_folder_output(out, self.model)
        save_torch(self.state_dict(), resume_path(out))
        record = self.hardening_record()
        if self.config.needs_generator and self.generator_rounds > 1:
            save_torch(self.generator_state, generator_path(out))
            record["final_generator"] = _file_identity(generator_path(out))
        all_metrics = dict(metrics or {})
        all_metrics["hardening"] = record
        if isinstance(self.model, FOLDER_MODELS):
            return save_hardened_folder(out, self.model, all_metrics)
        return save_target(out, self.model, class_names=list(self.class_names),
                           normalisation=self.original.normalisation, metrics=all_metrics)

    @classmethod
    def resume(cls, out: str | os.PathLike, target: Target, images, labels, *, device: str | torch.device = "auto",
               steps: int | None = None) -> "Hardener":
        """Continue the run whose files are at ``out`` (``steps`` may raise the total)."""
        path = resume_path(out)
        state = load_torch_dict(path, STATE_FORMAT, ("config", "model", "optimiser", "step", "rng"))
        config = HardenConfig.from_dict(state["config"])
        if steps is not None:
            config = config.replace(steps=int(steps))
        original = state.get("original") or {}
        given = weights_sha256(target.path) if original.get("sha256") else None
        if given is not None and given != original["sha256"]:
            raise AdvsegError(f"{path}: this run hardens {original.get('path')}, "
                              f"but the target given is {target.path} "
                              f"(another {'folder' if Path(target.path).is_dir() else 'file'})")
        data = state.get("data", {})
        shape = tuple(np.shape(images))
        if data and (data.get("height"), data.get("width")) != shape[1:3]:
            raise AdvsegError(f"{path}: the run trained on {data['height']} x {data['width']} slices, "
                              f"these are {shape[1]} x {shape[2]}")
        if config.needs_generator and state.get("generator_state") is None:
            raise AdvsegError(f"{path}: the resume state holds no generator")
        hardener = cls(config, target, images, labels, generator=state.get("generator_state"), device=device)
        hardener.load_state_dict(state)
        return hardener

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly from :meth:`state_dict` (the config is this hardener's)."""
        self.generator_source = state.get("generator_source")
        self.generator_rounds = int(state.get("generator_rounds", 1))
        self._generator_end = state.get("generator_end")
        self._refresh_generator()
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        for group in self.optimiser.param_groups:
            group["lr"] = self.config.lr
        self.step_count = int(state["step"])
        self.rng.set_state(state["rng"])
        self.history = [dict(m) for m in state.get("history", [])]
        self.seconds = float(state.get("seconds", 0.0))
