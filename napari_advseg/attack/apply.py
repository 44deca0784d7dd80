"""Applying a trained generator: from its fields to the image the network sees, and to HU.

One formula, used by every face: training and evaluation (normalised
images), ``advseg sample``, the widget's Export and "Apply to whole volume",
and the Explore layers. The HU volume a user exports is the image the network
was scored on:

1. ``x_adv = clip(T(x; phi) + b)`` (or ``clip(T(x; phi) * exp(b))``, the
   multiplicative mode), in the target's normalised units, clipped to the
   intensities the target can see (:func:`input_range`: a window target's
   window; z-score targets see everything). The fields act in HU before
   that clip, so the bias moves only pixels within the window: air, fat or
   bone beyond it stay beyond it (:func:`~napari_advseg.attack.fields.apply_fields`);
2. ``hu_adv = scale.to_hu(x_adv)``, except where ``x_adv`` sits on a clip
   bound: there the warped original HU beyond the bound are kept (bone stays
   bone), since the network sees the bound either way; then clipped to the
   scanner's range :data:`SCANNER_HU` (widened to the clean slice's own range
   where that is wider), and rounded to whole HU where the clean slice's HU
   are whole numbers, so that the exported volume keeps the input's integer
   type (:func:`adversarial_hu`);
3. the network's input for ``hu_adv`` is ``scale.apply(hu_adv)``: the target's
   own normalisation with the volume's scale (written to every sidecar as
   ``intensity_scale``). Segmentations and rho of written or displayed slices
   are computed from that input, so running the target on an exported volume
   gives the exported segmentation back, voxel for voxel.

A volumetric target (a 3D network, ``Target.slab_depth`` set) sees a whole
volume at once: :func:`attack_slices` makes G's fields batch by batch, with
one code for the volume, smooths them along z (``config.z_smooth``), and
calls the target once on the whole stack of adversarial slices, which must
then be consecutive slices of one volume (:func:`slices_to_run`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.fields import (apply_fields, at_bounds, fold_count, perceptibility_per_slice, warp_image,
                                         warp_labels)
from napari_advseg.attack.realism import RealismTally
from napari_advseg.attack.strength import scale_to_rho
from napari_advseg.data.intensity import scale_for
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.volume_fields import FieldBatch, generate_fields, slice_batch, smoothed_fields
from napari_advseg.models.target import is_volumetric
from napari_advseg.data.overlap import OverlapCounter, organ_row


def input_range(normalisation: dict | None) -> tuple[float, float] | None:
    """The normalised intensities a target can see: ``(low, high)`` for a window or CT target, else None.

    A window (or ``'ct'``) target clips HU to fixed bounds before the network,
    so its inputs lie in their image under the scaling ([-1, 1] for a default
    window); z-score and ``'none'`` targets' inputs are unbounded.
    """
    normalisation = normalisation or {}
    if normalisation.get("mode") not in ("window", "ct"):
        return None
    scale = scale_for(np.zeros(1, np.float32), normalisation)
    low, high = scale.apply(np.array([scale.clip_low, scale.clip_high], np.float32))
    return float(low), float(high)


def target_input_range(target) -> tuple[float, float] | None:
    """:func:`input_range` of a target's normalisation (None for objects without one)."""
    return input_range(getattr(target, "normalisation", None))


def slices_to_run(target, images, labels, index) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(images, labels, scored)``: what a target is run on to attack or score the slices ``index`` of a volume.

    ``images``, ``labels`` (or None): the whole volume's slices. A 2D target
    runs on the slices ``index`` alone (``scored`` None: all of them count).
    A volumetric target runs on the whole volume, since its network needs
    the neighbouring slices, and ``scored`` is ``index``: only those slices
    are scored, or have labels in training.
    """
    index = np.asarray(index, dtype=np.int64)
    if not is_volumetric(target):
        return images[index], None if labels is None else labels[index], None
    return images, labels, index


def fields_z_smooth(target, config: AttackConfig, z_smooth: float) -> float:
    """The sigma (slices) along z a volume's fields get: ``z_smooth``, or for a volumetric target given 0 the
    ``config.z_smooth`` its generator was trained with."""
    return config.z_smooth if is_volumetric(target) and z_smooth <= 0 else z_smooth


SCANNER_HU: tuple[float, float] = (-1024.0, 3071.0)
"""The range of HU a CT scanner writes (12 bits): adversarial HU stay within it (or the slice's own range)."""


def adversarial_hu(hu: np.ndarray, adversarial: np.ndarray, displacement: np.ndarray | None,
                   scale) -> np.ndarray:
    """Hounsfield units of adversarial slices (step 2 of the module's formula).

    Parameters
    ----------
    hu : (B, H, W) float array
        The clean slices in HU.
    adversarial : (B, H, W) float array
        ``x_adv`` in normalised units, clipped to the target's input range.
    displacement : (B, 2, H, W) float array in pixels, or None (no deformation)
    scale : IntensityScale
        The volume's scaling for the target.

    Returns
    -------
    (B, H, W) float32 array of HU, within :data:`SCANNER_HU` or the clean
    slice's own range, whichever is wider; whole numbers where the clean
    slice's HU are (each slice decides for itself, so batches do not matter).
    """
    hu = np.asarray(hu, np.float32)
    out = scale.to_hu(adversarial)
    if scale.clip_low is not None or scale.clip_high is not None:
        warped = hu
        if displacement is not None:
            warped = warp_image(torch.as_tensor(warped)[:, None], torch.as_tensor(displacement))[:, 0].numpy()
        # At a clip bound the network saw the bound; the original tissue beyond it is kept.
        if scale.clip_low is not None and scale.clip_high is not None:
            bounds = scale.apply(np.array([scale.clip_low, scale.clip_high], np.float32))
            below, above = at_bounds(adversarial, (float(bounds[0]), float(bounds[1])))
        else:  # one bound only: exactly at it
            below = adversarial <= scale.apply(np.float32(-np.inf if scale.clip_low is None else scale.clip_low))
            above = adversarial >= scale.apply(np.float32(np.inf if scale.clip_high is None else scale.clip_high))
        if scale.clip_high is not None:
            out = np.where(above, np.maximum(warped, np.float32(scale.clip_high)), out)
        if scale.clip_low is not None:
            out = np.where(below, np.minimum(warped, np.float32(scale.clip_low)), out)
    low = np.minimum(np.float32(SCANNER_HU[0]), hu.min(axis=(-2, -1), keepdims=True))
    high = np.maximum(np.float32(SCANNER_HU[1]), hu.max(axis=(-2, -1), keepdims=True))
    out = np.clip(out, low, high)
    whole = np.all(hu == np.rint(hu), axis=(-2, -1), keepdims=True)
    return np.where(whole, np.rint(out), out).astype(np.float32, copy=False)


def network_input(x: torch.Tensor, displacement: torch.Tensor, bias: torch.Tensor, bias_mode: str,
                  use_phi: bool, use_bias: bool, limits: tuple[float, float] | None,
                  hu: np.ndarray | None = None, scale=None) -> tuple[torch.Tensor, np.ndarray | None]:
    """The module's formula for a batch: the target's input ``(B, 1, H, W)`` and, with the slices'
    ``hu`` ``(B, H, W)`` and the volume's ``scale``, the adversarial HU ``(B, H, W)`` it comes from."""
    x_adv = apply_fields(x, displacement if use_phi else None, bias if use_bias else None, bias_mode, limits)
    if hu is None:
        return x_adv, None
    hu_adv = adversarial_hu(np.asarray(hu, np.float32), x_adv[:, 0].cpu().numpy(),
                            displacement.cpu().numpy() if use_phi else None, scale)
    return torch.as_tensor(scale.apply(hu_adv))[:, None].to(x.device), hu_adv


def bias_in_display_units(bias, config: AttackConfig, scale) -> np.ndarray:
    """A bias field as shown and exported: HU for additive bias, the factor ``exp(b)`` for multiplicative."""
    bias = np.asarray(bias, np.float32)
    if config.bias_mode == "additive":
        return (bias * np.float32(scale.scale)).astype(np.float32)
    return np.exp(bias).astype(np.float32)


@dataclass
class SliceBatchResult:
    """One batch of adversarial slices with everything the reports and the files need."""

    start: int
    adversarial: torch.Tensor   # (B, 1, H, W) the network's input, normalised
    displacement: torch.Tensor  # (B, 2, H, W) pixels; zero where the deformation is off
    bias: torch.Tensor          # (B, 1, H, W) normalised units; zero where the bias is off
    z_phi: torch.Tensor
    z_b: torch.Tensor
    pred_clean: torch.Tensor | None  # (B, H, W); None when the clean prediction was not asked for
    pred_adv: torch.Tensor      # (B, H, W)
    warped_reference: torch.Tensor | None  # (B, H, W) or None without labels
    rho: torch.Tensor           # (B,)
    adversarial_hu: np.ndarray | None = None  # (B, H, W) HU, when the slices' HU were given


@torch.no_grad()
def attack_slices(generator, config: AttackConfig, target, images, labels=None, *, batch_size: int = 8,
                  temperature: float = 1.0, rng: torch.Generator | None = None,
                  eps_phi: torch.Tensor | None = None, eps_b: torch.Tensor | None = None,
                  hu: np.ndarray | None = None, scale=None, latent: str = "slice",
                  fields: Iterable[FieldBatch] | None = None, rho: float | None = None,
                  clean: np.ndarray | None = None, predict_clean: bool = True
                  ) -> Iterator[SliceBatchResult]:
    """Apply G to slices batch by batch (streaming: one batch in memory at a time).

    ``images`` (N, H, W) normalised; ``labels`` (N, H, W) or None. Latent
    deviates: fixed ``eps_*`` of shape (latent_dim,) when given (the same for
    every slice), else drawn from ``rng`` (standard normal), else the
    encoder's mean. ``latent`` says how they are drawn: ``"slice"`` fresh for
    each slice (independent samples, as the evaluation wants), ``"volume"``
    once for all the slices (one code per volume: ``z = mu(x) + T sigma(x)
    eps`` then follows each slice's encoder mean, so the fields change
    smoothly along z). ``fields``: G's fields, batch by batch, made already
    (:func:`~napari_advseg.attack.volume_fields.smoothed_fields`); the
    deviates are then unused. With ``hu`` (N, H, W) and the volume's
    ``scale``, each result carries the HU of the adversarial slices and is
    segmented from them (the module's step 3). ``rho``: each slice's fields
    scaled to this rho (:func:`~napari_advseg.attack.strength.scale_to_rho`);
    None: G's own. ``clean``: the target's segmentation of ``images`` (N, H,
    W), made already (the target is then run once per batch, on the
    adversarial slices only); else it is predicted, unless ``predict_clean``
    is False (each result's ``pred_clean`` is then None).

    A volumetric target: ``images`` are consecutive slices of one volume;
    G's fields are made with one code for them all (``latent`` is then
    ``"volume"``) and smoothed along z by ``config.z_smooth`` slices, and one
    result covers every slice (the target sees the whole stack).
    """
    device = next(generator.parameters()).device
    limits = target_input_range(target)
    if fields is None:
        draw = dict(temperature=temperature, rng=rng, eps_phi=eps_phi, eps_b=eps_b)
        if is_volumetric(target):
            fields = smoothed_fields(generator, config, images, np.arange(len(images)), config.z_smooth,
                                     batch_size=batch_size, limits=limits, latent="volume", **draw)
        else:
            fields = generate_fields(generator, config, images, batch_size=batch_size, latent=latent, limits=limits,
                                     **draw)
    if is_volumetric(target):
        fields = [_one_batch(list(fields))]
    for start, displacement, bias, z_phi, z_b in fields:
        b = len(displacement)
        x = slice_batch(images, start, b, device)
        displacement, bias = displacement.to(device), bias.to(device)
        if rho is not None:
            scaled = scale_to_rho(x, displacement, bias, rho, bias_mode=config.bias_mode, use_phi=config.use_phi,
                                  use_bias=config.use_bias, input_range=limits)
            displacement, bias = scaled.displacement, scaled.bias
        x_adv, hu_adv = network_input(x, displacement, bias, config.bias_mode, config.use_phi, config.use_bias,
                                      limits, None if hu is None else hu[start:start + b], scale)
        if clean is not None:
            pred_clean = torch.as_tensor(np.asarray(clean[start:start + b])).long()
        elif predict_clean:
            pred_clean = target(x.to(target.device)).argmax(dim=1).cpu()
        else:
            pred_clean = None
        pred_adv = target(x_adv.to(target.device)).argmax(dim=1).cpu()
        warped = None
        if labels is not None:
            y = torch.as_tensor(np.asarray(labels[start:start + b])).long().to(device)
            warped = (warp_labels(y, displacement) if config.use_phi else y).cpu()
        yield SliceBatchResult(start, x_adv.cpu(), displacement.cpu(), bias.cpu(), z_phi.cpu(), z_b.cpu(),
                               pred_clean, pred_adv, warped, perceptibility_per_slice(x_adv, x).cpu(), hu_adv)


def _one_batch(batches: list[FieldBatch]) -> FieldBatch:
    """Field batches of consecutive slices as one batch (a volumetric target sees them all at once)."""
    if len(batches) == 1:
        return batches[0]
    return FieldBatch(batches[0].start, *(torch.cat([getattr(b, name) for b in batches])
                                          for name in ("displacement", "bias", "z_phi", "z_b")))


def _whole_volume(batches: list[FieldBatch], index: np.ndarray, n_slices: int) -> FieldBatch:
    """Fields made for the slices ``index`` placed in a batch of all ``n_slices`` slices, zero elsewhere."""
    made = _one_batch(batches)
    rows = torch.as_tensor(index)

    def placed(values: torch.Tensor) -> torch.Tensor:
        full = values.new_zeros((n_slices,) + tuple(values.shape[1:]))
        full[rows] = values
        return full

    return FieldBatch(0, placed(made.displacement), placed(made.bias), placed(made.z_phi), placed(made.z_b))


@dataclass
class VolumeAttack:
    """A whole volume attacked: arrays in canonical (Z, Y, X) order, and its figures.

    Slices left out keep the CT (``adversarial_hu``) and are empty elsewhere.
    """

    slices: np.ndarray
    adversarial_hu: np.ndarray           # float32 HU
    segmentation: np.ndarray             # uint8, f(x_adv)
    clean_segmentation: np.ndarray | None  # uint8, f(x); None when not asked for
    warped_reference: np.ndarray | None  # uint8, T_nearest(y; phi); None without labels
    displacement: np.ndarray             # (Z, Y, X, 2) float32 pixels
    bias: np.ndarray                     # float32, display units (bias_in_display_units)
    rho: list[float] = field(default_factory=list)
    z_phi: list[list[float]] = field(default_factory=list)
    z_b: list[list[float]] = field(default_factory=list)
    folded: int = 0
    checked: int = 0
    organs: dict[str, Any] = field(default_factory=dict)
    realism: RealismTally = field(default_factory=RealismTally)

    @property
    def mean_rho(self) -> float:
        return float(np.mean(self.rho)) if self.rho else math.nan

    @property
    def fold_fraction(self) -> float:
        return self.folded / self.checked if self.checked else 0.0


def attack_volume(generator, config: AttackConfig, target, case, *, slices: Sequence[int] | None = None,
                  seed: int = 0, temperature: float = 1.0, eps_phi=None, eps_b=None,
                  batch_size: int = 4, latent: str = "volume", z_smooth: float = 0.0,
                  rho: float | None = None, clean_segmentation: np.ndarray | None = None,
                  predict_clean: bool = True) -> Iterator[int]:
    """Attack the slices of a case; yields the slices done after each batch, returns a :class:`VolumeAttack`.

    The one path behind ``advseg sample``, the widget's Export and its "Apply
    to whole volume": for the same code they give the same arrays. Latent
    deviates: fixed ``eps_*`` (one code for every slice), else drawn from
    ``seed``: once for the volume (``latent="volume"``, the default: fields
    change smoothly along z) or per slice (``latent="slice"``). ``z_smooth``:
    a Gaussian of that many slices (sigma) over both fields along z before
    they are applied (0: none; it holds the fields of every attacked slice
    at once, :func:`~napari_advseg.attack.volume_fields.smoothed_fields`).
    ``rho``: every slice's fields scaled to this rho (None: G's own).
    ``clean_segmentation``: the target's segmentation of the whole clean
    volume (Z, Y, X), from an earlier result of the same target and case: it
    is reused, and the target runs on the adversarial volume only (one network
    pass instead of two). Without it the clean volume is segmented too, unless
    ``predict_clean`` is False: the result's ``clean_segmentation`` and
    ``organs`` are then None and empty.

    A volumetric target is run on the whole adversarial volume, the slices
    left out unchanged (zero fields), and its fields are smoothed along z by
    ``z_smooth`` when given, else by the ``config.z_smooth`` G was trained with.
    """
    if z_smooth < 0:
        raise AdvsegError(f"z_smooth is a Gaussian's sigma in slices and cannot be negative, got {z_smooth}")
    n_slices = case.volume.n_slices
    index = np.arange(n_slices) if slices is None else np.asarray(sorted(set(int(s) for s in slices)))
    shape = case.volume.shape
    if clean_segmentation is not None and tuple(clean_segmentation.shape) != tuple(shape):
        raise AdvsegError(f"the clean segmentation to reuse has shape {tuple(clean_segmentation.shape)}, "
                          f"the volume {tuple(shape)}")
    with_clean = clean_segmentation is not None or predict_clean
    result = VolumeAttack(
        slices=index, adversarial_hu=case.volume.hu.astype(np.float32, copy=True),
        segmentation=np.zeros(shape, np.uint8),
        clean_segmentation=np.zeros(shape, np.uint8) if with_clean else None,
        warped_reference=None if case.labels is None else case.labels.copy(),
        displacement=np.zeros(shape + (2,), np.float32), bias=np.zeros(shape, np.float32))
    n_classes = len(target.class_names)
    clean_counter, adv_counter = OverlapCounter(n_classes), OverlapCounter(n_classes)
    rng = torch.Generator().manual_seed(seed)
    limits = target_input_range(target)
    draw = dict(temperature=temperature, rng=rng, eps_phi=eps_phi, eps_b=eps_b, latent=latent)
    if is_volumetric(target):  # the network sees the whole volume; the slices left out keep zero fields
        made = smoothed_fields(generator, config, case.images[index], index,
                               fields_z_smooth(target, config, z_smooth), batch_size=batch_size,
                               limits=limits, **draw)
        stream = attack_slices(generator, config, target, case.images, case.labels, hu=case.volume.hu,
                               scale=case.scale, fields=[_whole_volume(made, index, n_slices)], rho=rho,
                               clean=clean_segmentation, predict_clean=predict_clean)
        run = np.arange(n_slices)
    else:
        fields = None
        if z_smooth > 0:
            fields = smoothed_fields(generator, config, case.images[index], index, z_smooth, batch_size=batch_size,
                                     limits=limits, **draw)
        stream = attack_slices(generator, config, target, case.images[index],
                               None if case.labels is None else case.labels[index], batch_size=batch_size,
                               hu=case.volume.hu[index], scale=case.scale, fields=fields, rho=rho,
                               clean=None if clean_segmentation is None else clean_segmentation[index],
                               predict_clean=predict_clean, **draw)
        run = index
    done = 0
    for batch in stream:
        slices = run[batch.start:batch.start + len(batch.rho)]
        keep = torch.as_tensor(np.isin(slices, index))
        z = slices[keep.numpy()]
        pred_adv = batch.pred_adv[keep]
        displacement, bias = batch.displacement[keep], batch.bias[keep]
        result.adversarial_hu[z] = batch.adversarial_hu[keep.numpy()]
        result.segmentation[z] = pred_adv.numpy().astype(np.uint8)
        if with_clean:
            result.clean_segmentation[z] = batch.pred_clean[keep].numpy().astype(np.uint8)
        result.displacement[z] = displacement.permute(0, 2, 3, 1).numpy()
        result.bias[z] = bias_in_display_units(bias[:, 0].numpy(), config, case.scale)
        if result.warped_reference is not None:
            warped = batch.warped_reference[keep]
            result.warped_reference[z] = warped.numpy().astype(np.uint8)
            if with_clean:
                clean_counter.add(batch.pred_clean[keep], torch.as_tensor(case.labels[z]))
            adv_counter.add(pred_adv, warped)
        result.rho.extend(batch.rho[keep].tolist())
        result.z_phi.extend(batch.z_phi[keep].tolist())
        result.z_b.extend(batch.z_b[keep].tolist())
        f, c = fold_count(displacement)
        result.folded, result.checked = result.folded + f, result.checked + c
        result.realism.add(displacement, bias)
        done += len(z)
        yield done
    if result.warped_reference is not None and with_clean:
        clean_dice, adv_dice = clean_counter.dice(), adv_counter.dice()
        for c in range(1, n_classes):
            if not math.isnan(clean_dice[c]):
                result.organs[target.class_names[c]] = organ_row(clean_dice[c], adv_dice[c])
    return result


def run_attack_volume(stream: Iterator[int], progress=None) -> VolumeAttack:
    """Drive :func:`attack_volume` to its end; ``progress(n)`` gets the slices done by each batch."""
    done = 0
    while True:
        try:
            now = next(stream)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(now - done)
        done = now
