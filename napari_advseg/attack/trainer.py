"""AttackTrainer: alternate critic and generator steps, yield metrics, checkpoint, resume exactly.

The loop of Eq. 6: several WGAN critic steps (Eq. 3, gradient penalty or
clipping), then one generator step on the weighted sum of the loss terms of
:class:`~napari_advseg.attack.generator_loss.GeneratorLoss`, both with
RMSProp. Every random draw (batches, latent noise, penalty mixing) comes from
the trainer's own :class:`torch.Generator`, whose state is saved in the
checkpoint (:mod:`napari_advseg.attack.checkpoint` reads it back), so N steps
+ save + resume + N steps equals 2N steps.

Under ``torchrun`` (WORLD_SIZE > 1) the generator is wrapped in
DistributedDataParallel; the critic's gradients are averaged by hand, since
its gradient penalty needs a double backward that DDP's hooks do not cover.
Rank 0 alone writes checkpoints.

A volumetric target (a 3D network, :attr:`~napari_advseg.models.target.Target.slab_depth`
set) is attacked slab by slab: each batch, of the critic's steps and the
generator's, is one slab of ``slab_depth`` consecutive slices of the
training volume (``config.batch_size`` is unused), its start drawn from the
starts whose slab holds organs to attack; its slices share one latent
deviate (one code per slab, as sampling uses one per volume), and G's
fields are smoothed along the slab's z by a Gaussian of ``config.z_smooth``
slices (:func:`~napari_advseg.attack.volume_fields.smooth_along_z`,
differentiable) and limited to the budgets again before they are applied.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from napari_advseg.io.atomic import save_torch
from napari_advseg.models.folder_targets import weights_sha256
from napari_advseg.attack.config import AttackConfig
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError
from napari_advseg.seeding import seeded_build
from napari_advseg.attack.apply import target_input_range
from napari_advseg.attack.checkpoint import GENERATOR_FORMAT, check_generator_fits, load_checkpoint
from napari_advseg.attack.fields import perceptibility
from napari_advseg.attack.generator_loss import GeneratorLoss
from napari_advseg.attack.critic import Critic
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.attack.distributed import init_distributed
from napari_advseg.attack.latent_terms import single_number_codes
from napari_advseg.attack.teacher import TeacherCache
from napari_advseg.attack.volume_fields import smooth_along_z
from napari_advseg.attack.losses import critic_loss, gradient_penalty, organ_mask
from napari_advseg.models.target import is_volumetric
from napari_advseg.models.unet import predict_labels


def organ_ids(class_names: tuple[str, ...] | list[str], organs: list[str] | None) -> list[int] | None:
    """Label values of the organs to attack (None = every foreground class)."""
    if organs is None:
        return None
    ids = []
    for name in organs:
        if name not in class_names:
            raise AdvsegError(f"unknown organ {name!r}: the target's classes are {', '.join(class_names[1:])}")
        ids.append(list(class_names).index(name))
    return ids


def bias_unit(images: torch.Tensor, bias_mode: str) -> float:
    """The bias field's unit for these slices: their root mean square (1 for a multiplicative bias).

    rho measures change relative to ``||x||``, so a bias bound in these units
    asks the same of every normalisation: ``b_max`` 1 is one RMS of the slices,
    whether the target sees z-scores or a window mapped to [0, 1].
    """
    if bias_mode == "multiplicative":
        return 1.0
    return float(images.float().pow(2).mean().sqrt().clamp_min(1e-6))


class AttackTrainer:
    """Train a generator G against a frozen target network f.

    Parameters
    ----------
    config : AttackConfig
    target : napari_advseg.models.target.Target
        The frozen segmentation network (``target(x)`` gives logits).
    images : (N, H, W) float array or tensor
        Training slices, normalised as the target expects; for a volumetric
        target, a whole volume's consecutive slices.
    labels : (N, H, W) integer array or tensor, or None
        Reference labels. None (or ``config.label_mode == "predicted"``) uses
        ``argmax f(x)`` instead: the label-free mode.
    device : str or torch.device
        ``"auto"`` picks cuda, then mps, then cpu.
    scored : sequence of int, optional
        The slices whose labels may enter the attack loss; the others' labels
        (reference or predicted) are set to 0, so they are input only (a
        volumetric target's held-out slices). None: every slice.
    """

    def __init__(self, config: AttackConfig, target, images, labels=None, device: str | torch.device = "auto",
                 scored=None):
        self.config = config
        self.device = resolve_device(device)
        self.rank, self.world_size = init_distributed(self.device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.target = target
        self.input_range = target_input_range(target)
        if getattr(target, "device", self.device) != self.device:
            target.model.to(self.device)
            target.device = self.device
        self.images = self._as_images(images)
        if config.bias_unit is None:  # resolved once, recorded in the checkpoint with the rest of the config
            config = config.replace(bias_unit=bias_unit(self.images, config.bias_mode))
            self.config = config
        self.organ_ids = organ_ids(tuple(target.class_names), config.organs)
        self.attacked_ids = self.organ_ids or list(range(1, len(target.class_names)))
        if labels is None or config.label_mode == "predicted":
            self.labels = torch.as_tensor(predict_labels(target, self.images, batch_size=16)).long()
            self.label_source = "predicted"
        else:
            self.labels = torch.as_tensor(np.asarray(labels)).long()
            self.label_source = "reference"
            if tuple(self.labels.shape) != tuple(self.images.shape[:1] + self.images.shape[2:]):
                raise AdvsegError(f"labels of shape {tuple(self.labels.shape)} do not match images of shape "
                                  f"{tuple(self.images.shape[:1] + self.images.shape[2:])}")
        if scored is not None:
            held_out = torch.ones(len(self.labels), dtype=torch.bool)
            held_out[torch.as_tensor(np.asarray(scored, dtype=np.int64))] = False
            self.labels = self.labels.clone()  # the caller's array stays as it is
            self.labels[held_out] = 0
        self.loss = GeneratorLoss(config, target, self.input_range, self.organ_ids, self.attacked_ids)
        attacked = organ_mask(self.labels, self.organ_ids, 0).flatten(1).sum(dim=1) > 0
        self.slab_depth = target.slab_depth if is_volumetric(target) else None
        if self.slab_depth is None:  # the slices a batch is drawn from
            self.slice_pool = torch.nonzero(attacked).flatten()
        else:  # the starts of the slabs a batch is drawn from
            self.slab_depth = min(int(self.slab_depth), len(self.images))
            holds = [bool(attacked[s:s + self.slab_depth].any())
                     for s in range(len(self.images) - self.slab_depth + 1)]
            self.slice_pool = torch.nonzero(torch.as_tensor(holds, dtype=torch.bool)).flatten()
        if self.slice_pool.numel() == 0:
            raise AdvsegError("no training slice contains the organs to attack "
                              f"({'all organs' if config.organs is None else ', '.join(config.organs)})")

        self.teacher = None
        if config.lambda_teacher > 0:
            if self.slab_depth is not None:
                raise AdvsegError("lambda_teacher works with a 2D target only; this target is 3D (set it to 0)")
            self.teacher = TeacherCache(config, target, self.input_range, self.organ_ids,
                                        (self.images.shape[0], self.images.shape[2], self.images.shape[3]))

        with seeded_build(config.seed):
            self.generator = AttackGenerator(config).to(self.device)
            self.critic = Critic(config.critic_channels).to(self.device)
        self.generator_ddp: torch.nn.Module = self.generator
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.generator_ddp = DDP(self.generator, find_unused_parameters=config.fields != "both")
            for p in self.critic.parameters():  # start every rank's critic from rank 0's
                dist.broadcast(p.data, 0)
        self.opt_g = torch.optim.RMSprop(self.generator.parameters(), lr=config.lr_generator,
                                         alpha=config.rmsprop_decay)
        self.opt_d = torch.optim.RMSprop(self.critic.parameters(), lr=config.lr_critic,
                                         alpha=config.rmsprop_decay)
        self.rng = torch.Generator().manual_seed(config.seed * 1_000_003 + self.rank)
        self.step_count = 0
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ data
    @staticmethod
    def _as_images(images) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != 1:
            raise AdvsegError(f"training images must be (N, H, W) slices, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise AdvsegError("training images contain NaN or infinite values")
        return x

    def _batch_index(self) -> torch.Tensor:
        """The training slices of the next batch: ``batch_size`` drawn from the pool, or a slab's."""
        if self.slab_depth is None:
            pick = torch.randint(self.slice_pool.numel(), (self.config.batch_size,), generator=self.rng)
            return self.slice_pool[pick]
        start = int(self.slice_pool[torch.randint(self.slice_pool.numel(), (1,), generator=self.rng)])
        return torch.arange(start, start + self.slab_depth)

    def _batch(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of the training slices ``idx`` (default: the next batch's) on the device."""
        idx = self._batch_index() if idx is None else idx
        return self.images[idx].to(self.device), self.labels[idx].to(self.device)

    def _seen(self, idx: torch.Tensor) -> torch.Tensor | None:
        """What G reads for the batch ``idx``: each slice's neighbour up to ``neighbour_input`` places away in
        the training stack (clipped at its ends), with ``neighbour_blend`` a random point between the slice
        and that neighbour; None where G reads the batch itself (``neighbour_input`` 0, or a 3D target)."""
        k = self.config.neighbour_input
        if k <= 0 or self.slab_depth is not None:  # a slab holds its neighbours already
            return None
        offset = torch.randint(-k, k + 1, idx.shape, generator=self.rng)
        seen = self.images[(idx + offset).clamp(0, len(self.images) - 1)]
        if self.config.neighbour_blend:
            own = self.images[idx]
            seen = own + torch.rand(len(idx), 1, 1, 1, generator=self.rng) * (seen - own)
        return seen.to(self.device)

    def _noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent deviates for ``n`` slices: one per slice, or one per slab shared by its slices."""
        d, rows = self.config.latent_dim, (n if self.slab_depth is None else 1)
        return (torch.randn(rows, d, generator=self.rng).expand(n, d).to(self.device),
                torch.randn(rows, d, generator=self.rng).expand(n, d).to(self.device))

    def _along_z(self, out, x: torch.Tensor):
        """G's output for ``x`` (one or more draws stacked): a slab's fields smoothed along z and limited again.

        Unchanged for a 2D target or ``z_smooth`` 0. Each draw is a run of its
        own (no smoothing across draws); differentiable.
        """
        sigma = self.config.z_smooth
        if self.slab_depth is None or sigma <= 0:
            return out
        n = x.shape[0]
        draws = out.displacement.shape[0] // n
        index = np.concatenate([np.arange(n) + k * (n + 1) for k in range(draws)])  # a gap between draws
        displacement = smooth_along_z(out.displacement, index, sigma)
        bias = smooth_along_z(out.bias, index, sigma)
        displacement, bias = self.generator.limit_rho(x.repeat(draws, 1, 1, 1), displacement, bias, self.input_range)
        return dataclasses.replace(out, displacement=displacement, bias=bias)

    def _adversarial(self, model: torch.nn.Module, x: torch.Tensor):
        out = self._along_z(model(x, *self._noise(x.shape[0]), input_range=self.input_range), x)
        return out, self.loss.apply(x, out)

    # ------------------------------------------------------------------ steps
    def _critic_step(self) -> dict[str, float]:
        cfg = self.config
        x, _ = self._batch()
        with torch.no_grad():
            _, x_adv = self._adversarial(self.generator, x)
        score_real, score_adv = self.critic(x), self.critic(x_adv)
        loss = critic_loss(score_adv, score_real)
        penalty = torch.zeros((), device=self.device)
        if cfg.critic == "gp":
            mix = torch.rand(x.shape[0], 1, 1, 1, generator=self.rng).to(self.device)
            penalty = gradient_penalty(self.critic, x, x_adv, mix)
        self.opt_d.zero_grad(set_to_none=True)
        (loss + cfg.gp_weight * penalty).backward()
        if self.world_size > 1:
            for p in self.critic.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world_size
        self.opt_d.step()
        if cfg.critic == "clip":
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-cfg.clip_value, cfg.clip_value)
        return {"loss_critic": loss.item(), "gradient_penalty": penalty.item(),
                "wasserstein": (score_real.mean() - score_adv.mean()).item()}

    def _generator_step(self) -> dict[str, float]:
        cfg = self.config
        idx = self._batch_index()
        x, y = self._batch(idx)
        n = x.shape[0]
        teacher = None if self.teacher is None else self.teacher.fields(idx, x, y)
        # Up to three latent draws per slice in one forward pass (one DDP call): the paper's random code,
        # a second random code for the diversity term, and a single-number probe (one latent number at
        # +-single_sd, the rest at the mean) for the single-number attack term.
        chunks = [self._noise(n)]
        if cfg.lambda_diversity > 0:
            chunks.append(self._noise(n))
        if cfg.lambda_single > 0:
            if self.slab_depth is None:
                chunks.append(single_number_codes(cfg, n, self.rng, self.device))
            else:  # one probe per slab
                chunks.append(tuple(e.expand(n, -1) for e in single_number_codes(cfg, 1, self.rng, self.device)))
        eps_phi = torch.cat([c[0] for c in chunks])
        eps_b = torch.cat([c[1] for c in chunks])
        seen = self._seen(idx)
        every = self.generator_ddp(x.repeat(len(chunks), 1, 1, 1), eps_phi, eps_b, input_range=self.input_range,
                                   seen=None if seen is None else seen.repeat(len(chunks), 1, 1, 1))
        every = self._along_z(every, x)
        terms, extra = self.loss.terms(x, y, every, eps_phi, eps_b, len(chunks), self.critic, teacher)
        loss = self.loss.total(terms)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        with torch.no_grad():
            rho = perceptibility(extra["x_adv"], x)
        reported = {"loss_generator": loss, "attack_ce": extra["attack_ce"], "attack_loss": terms["attack"],
                    "realism": terms["realism"], "rho": rho, "smooth_phi": terms["smooth_phi"],
                    "smooth_b": terms["smooth_b"], "norm": terms["norm"], "jacobian": terms["jacobian"],
                    "kl": terms["kl_phi"] + terms["kl_b"], "diversity": terms["diversity"],
                    "single_attack_loss": terms["single"], "alone_attack_loss": terms["alone"],
                    "budget_excess": terms["excess"], "mean_pull": terms["mean_pull"],
                    "bias_spectrum": terms["spectrum"], "teacher": terms["teacher"]}
        return {key: value.item() for key, value in reported.items()}

    def step(self) -> dict[str, float]:
        """One training step (``critic_steps`` critic updates, one generator update); its metrics."""
        start = time.perf_counter()
        self.generator.train()
        self.critic.train()
        critic_metrics: dict[str, list[float]] = {}
        for _ in range(self.config.critic_steps):
            for key, value in self._critic_step().items():
                critic_metrics.setdefault(key, []).append(value)
        metrics: dict[str, float] = {k: float(np.mean(v)) for k, v in critic_metrics.items()}
        metrics.update(self._generator_step())
        if self.world_size > 1:  # batch-norm statistics: every rank keeps rank 0's, as DDP does at forward
            for buffer in self.generator.buffers():
                dist.broadcast(buffer, 0)
        self.step_count += 1
        metrics["step"] = self.step_count
        metrics["gamma"] = self.config.gamma
        metrics["seconds"] = time.perf_counter() - start
        self.history.append(metrics)
        return metrics

    def run(self, steps: int | None = None, checkpoint_path: str | os.PathLike | None = None,
            checkpoint_every: int = 0) -> Iterator[dict[str, float]]:
        """Train ``steps`` more steps (default: up to ``config.steps``), yielding each step's metrics.

        With ``checkpoint_path`` and ``checkpoint_every > 0`` a checkpoint is
        written every that many steps and after the last one. A consumer that
        stops early should call :meth:`save_checkpoint` itself.
        """
        end = self.config.steps if steps is None else self.step_count + steps
        while self.step_count < end:
            metrics = self.step()
            if checkpoint_path and checkpoint_every > 0 and self.step_count % checkpoint_every == 0:
                self.save_checkpoint(checkpoint_path)
            yield metrics
        if checkpoint_path:
            self.save_checkpoint(checkpoint_path)

    # ------------------------------------------------------------------ checkpoints
    def _rng_states(self) -> list[torch.Tensor]:
        state = self.rng.get_state()
        if self.world_size == 1:
            return [state]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimisers, config, step, RNG."""
        target_path = getattr(self.target, "path", None)
        return {
            "format": GENERATOR_FORMAT,
            "version": 1,
            "config": self.config.to_dict(),
            "step": self.step_count,
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer_generator": self.opt_g.state_dict(),
            "optimizer_critic": self.opt_d.state_dict(),
            "rng": self._rng_states(),
            "world_size": self.world_size,
            "class_names": list(self.target.class_names),
            "normalisation": getattr(self.target, "normalisation", None),
            "label_source": self.label_source,
            "target": {"path": str(target_path) if target_path else None,
                       "sha256": weights_sha256(target_path),
                       "sliding_window": getattr(self.target, "sliding_window", None)},
            "data": {"slices": int(self.images.shape[0]), "height": int(self.images.shape[2]),
                     "width": int(self.images.shape[3])},
            "history": [{k: float(v) for k, v in m.items()} for m in self.history],
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; other ranks take part and return None)."""
        state = self.state_dict()  # collective under DDP: every rank must call it
        if self.rank != 0:
            return None
        return save_torch(state, path)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["optimizer_generator"])
        self.opt_d.load_state_dict(state["optimizer_critic"])
        self.step_count = int(state["step"])
        rng = state["rng"]
        if len(rng) == self.world_size:
            self.rng.set_state(rng[self.rank])
        else:  # another world size: continue with fresh but reproducible streams
            self.rng.manual_seed(self.config.seed * 1_000_003 + self.rank + 7919 * self.step_count)
        self.history = [dict(m) for m in state.get("history", [])]
        if self.teacher is not None and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])

    @classmethod
    def resume(cls, path: str | os.PathLike, target, images, labels=None, device: str | torch.device = "auto",
               scored=None, **config_changes: Any) -> "AttackTrainer":
        """A trainer continuing from a checkpoint (``config_changes`` may raise ``steps``, say)."""
        state = load_checkpoint(path)
        config = AttackConfig.from_dict(state["config"])
        if config_changes:
            config = config.replace(**config_changes)
        check_generator_fits(state, target, str(path))
        trainer = cls(config, target, images, labels, device, scored)
        trainer.load_state_dict(state)
        return trainer
