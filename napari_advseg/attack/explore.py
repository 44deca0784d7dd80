"""Interactive exploration of a generator's latent space on one slice (no Qt here).

The encoder and the clean segmentation run once per slice
(:meth:`SliceExplorer.set_slice`); every slider change then only decodes the
fields from new latent codes and warps (stage one), and re-segments (stage
two, which a viewer can show later), which is what keeps a slider drag
interactive.

A volumetric target (``target.slab_depth`` an int: a 3D network called on
consecutive slices) sees the explored slice amid its neighbours: the
:class:`Slab` of ``slab_depth`` slices around it. Stage one then calls no
network at all (the clean segmentation waits for stage two too); stage two
decodes the neighbours' fields with the same latent deviates (one code for
the slab, as a whole-volume attack has one code per volume), runs the
network on the adversarial slab and keeps its prediction of the explored
slice. The slab's encoding and clean prediction are made once per slice.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.apply import network_input, target_input_range
from napari_advseg.data.overlap import dice_per_organ, organ_row
from napari_advseg.attack.fields import fold_fraction, perceptibility, warp_labels
from napari_advseg.attack.generator import LatentStats
from napari_advseg.attack.strength import scale_to_rho
from napari_advseg.errors import AdvsegError


SLAB_BATCH = 8
"""Neighbours of a slab decoded at once (:meth:`SliceExplorer.adversarial_slab`)."""


def slab_depth(target) -> int | None:
    """The number of consecutive slices a volumetric target wants per call; None for a 2D target."""
    depth = getattr(target, "slab_depth", None)
    return None if depth is None else max(1, int(depth))


def slab_bounds(z: int, n_slices: int, depth: int) -> tuple[int, int]:
    """``(start, stop)`` of the ``depth`` consecutive slices around slice ``z`` of ``n_slices``.

    ``z`` is in the middle (the lower middle for an even depth), shifted
    inwards at the ends of the volume; a volume with fewer slices gives all of them.
    """
    depth = max(1, min(int(depth), int(n_slices)))
    start = min(max(int(z) - (depth - 1) // 2, 0), int(n_slices) - depth)
    return start, start + depth


@dataclass(frozen=True)
class LatentCode:
    """What a view was rendered with: deviates, temperature, the switches in force and the rho asked for.

    Stage two of a volumetric target renders the slab's other slices with it.
    """

    eps_phi: np.ndarray | None
    eps_b: np.ndarray | None
    temperature: float
    use_phi: bool
    use_bias: bool
    rho: float | None


class Slab:
    """The consecutive slices a volumetric target sees around the explored one.

    Parameters
    ----------
    images : (D, H, W) normalised slices
    centre : index of the explored slice in ``images``
    hu : (D, H, W) their HU, or None
    labels : (H, W) reference of the explored slice, or None (label-free)

    The neighbours' encoding and the clean prediction are computed on first
    use (:meth:`encoded`, :meth:`clean`) and kept; both are safe to call from
    several threads.
    """

    def __init__(self, images: np.ndarray, centre: int, hu: np.ndarray | None = None,
                 labels: np.ndarray | None = None):
        images = np.asarray(images, np.float32)
        if images.ndim != 3 or not 0 <= int(centre) < len(images):
            raise AdvsegError(f"a slab is (D, H, W) slices with its explored slice among them; got shape "
                              f"{images.shape} and slice {centre}")
        self.images = images
        self.centre = int(centre)
        self.hu = None if hu is None else np.asarray(hu, np.float32)
        self.labels = None if labels is None else np.asarray(labels)
        self._lock = threading.Lock()
        self._encoded = None
        self._clean: tuple[np.ndarray, dict] | None = None

    @property
    def depth(self) -> int:
        return len(self.images)

    @property
    def neighbours(self) -> list[int]:
        """Indices of the slab's slices other than the explored one."""
        return [k for k in range(self.depth) if k != self.centre]

    def tensor(self, device) -> torch.Tensor:
        """The clean slab ``(D, 1, H, W)``."""
        return torch.as_tensor(self.images)[:, None].to(device)

    def encoded(self, generator) -> tuple:
        """``(x, features, stats, gate)`` of the neighbours (encoded once)."""
        with self._lock:
            if self._encoded is None:
                device = next(generator.parameters()).device
                x = self.tensor(device)[self.neighbours]
                parts = [(generator.encode(x[k:k + SLAB_BATCH]), generator.displacement_gate(x[k:k + SLAB_BATCH]))
                         for k in range(0, len(x), SLAB_BATCH)]
                features = torch.cat([part[0][0] for part in parts])
                stats = LatentStats(*(torch.cat([getattr(part[0][1], name) for part in parts])
                                      for name in ("mu_phi", "logvar_phi", "mu_b", "logvar_b")))
                gate = None if parts[0][1] is None else torch.cat([part[1] for part in parts])
                self._encoded = (x, features, stats, gate)
            return self._encoded

    def clean(self, target) -> tuple[np.ndarray, dict]:
        """The target's clean prediction of the explored slice (uint8 (H, W)) and its Dice against the
        reference (the labels, or the prediction itself when label-free); computed once."""
        with self._lock:
            if self._clean is None:
                logits = target(self.tensor(target.device))
                prediction = logits.argmax(dim=1)[self.centre].cpu()[None]
                reference = prediction if self.labels is None else torch.as_tensor(self.labels).long()[None]
                dice = dice_per_organ(prediction, reference, list(target.class_names))
                self._clean = (prediction[0].to(torch.uint8).numpy(), dice)
            return self._clean

    def known_clean(self) -> tuple[np.ndarray, dict] | None:
        """:meth:`clean`'s answer if it was made already, else None (never runs the network)."""
        return self._clean


@dataclass
class SliceView:
    """Everything the viewer shows for one slice and one latent code.

    adversarial : (H, W) the network's input, normalised intensities
    adversarial_hu : (H, W) HU of the adversarial slice (None unless the slice's HU were given)
    displacement : (2, H, W) pixels (dy, dx)
    bias : (H, W) normalised units
    clean_segmentation, adversarial_segmentation : (H, W) uint8, or None when not (yet) made; a volumetric
        target's clean segmentation comes with stage two
    warped_reference : (H, W) uint8 (reference labels, or the clean prediction without them); None until
        stage two for a label-free volumetric target whose clean prediction is not known yet
    organs : per-organ {"dice_clean", "dice_adv", "drop", "success"} of this slice (empty until segmented)
    rho : the slice's perceptibility (Eq. 7)
    fold_fraction : fraction of pixels where the deformation folds (NaN when not counted)
    dice_clean : per-organ Dice of the clean segmentation (NaN where the organ is absent)
    code : what the view was rendered with
    slab : the slab a volumetric target segments (None for a 2D target)
    """

    adversarial: np.ndarray
    displacement: np.ndarray
    bias: np.ndarray
    clean_segmentation: np.ndarray | None
    adversarial_segmentation: np.ndarray | None
    warped_reference: np.ndarray | None
    organs: dict = field(default_factory=dict)
    rho: float = math.nan
    fold_fraction: float = 0.0
    adversarial_hu: np.ndarray | None = None
    dice_clean: dict = field(default_factory=dict)
    code: LatentCode | None = None
    slab: Slab | None = None


class SliceExplorer:
    """Encode a slice once, then decode any latent deviates quickly.

    A render has two stages, so that a viewer can show the first one while
    the second runs: :meth:`render_fields` (fields, adversarial image, warped
    reference, rho; tens of milliseconds) and :meth:`segment` (the target's
    forward pass and the Dice table; the slow part on large slices).
    :meth:`render` runs both.

    Parameters
    ----------
    generator : AttackGenerator (eval mode)
    config : its AttackConfig
    target : napari_advseg.models.target.Target
        2D, or volumetric (``slab_depth``): see the module's docstring.
    scale : IntensityScale, optional
        The volume's scaling for the target. With it and a slice's HU
        (:meth:`set_slice`), views carry the adversarial HU and are segmented
        from them, exactly as ``advseg sample`` writes them (attack.apply).
    """

    def __init__(self, generator, config: AttackConfig, target, scale=None):
        self.generator = generator.eval()
        self.config = config
        self.target = target
        self.scale = scale
        self.slab_depth = slab_depth(target)
        self.input_range = target_input_range(target)
        self._hu: np.ndarray | None = None
        self.device = next(generator.parameters()).device
        self._x: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        self._stats = None
        self._reference: torch.Tensor | None = None
        self._clean_uint8: np.ndarray | None = None
        self._dice_clean: dict[str, float] = {}
        self._slab: Slab | None = None

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def volumetric(self) -> bool:
        """Whether the target is a 3D network segmenting slabs of consecutive slices."""
        return self.slab_depth is not None

    @torch.no_grad()
    def set_slice(self, image: np.ndarray, labels: np.ndarray | None = None, hu: np.ndarray | None = None,
                  slab: Slab | None = None) -> None:
        """Encode a normalised slice ``(H, W)``; labels ``(H, W)`` are its reference (optional);
        ``hu`` ``(H, W)`` its Hounsfield units (used with the explorer's ``scale``).

        What does not depend on the latent code is computed here once: for a
        2D target the clean segmentation and its Dice against the reference.
        A volumetric target gets ``slab``, the slice amid its neighbours
        (default: the slice alone; :meth:`set_case_slice` makes it from a
        case); its network runs in :meth:`segment` only.
        """
        x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None].to(self.device)
        self._hu = None if hu is None or self.scale is None else np.asarray(hu, np.float32)[None]
        self._x = x
        self._features, self._stats = self.generator.encode(x)
        self._gate = self.generator.displacement_gate(x)
        if self.volumetric:
            if slab is None:
                slab = Slab(np.asarray(image, np.float32)[None], 0, None if hu is None else np.asarray(hu)[None],
                            labels)
            self._slab = slab
            self._clean_uint8, self._dice_clean = None, {}
            self._reference = None if labels is None else torch.as_tensor(np.asarray(labels)).long()[None].to(
                self.device)
            return
        self._slab = None
        clean = self.target(x.to(self.target.device)).argmax(dim=1).cpu()
        reference = clean if labels is None else torch.as_tensor(np.asarray(labels)).long()[None]
        self._reference = reference.to(self.device)
        self._clean_uint8 = clean[0].to(torch.uint8).numpy()
        self._dice_clean = dice_per_organ(clean, reference, list(self.target.class_names))

    def set_case_slice(self, case, z: int) -> int:
        """:meth:`set_slice` with slice ``z`` of a case (clipped to its slices; returned), its reference
        labels and HU, and for a volumetric target the slab around it."""
        z = int(np.clip(z, 0, case.volume.n_slices - 1))
        labels = None if case.labels is None else case.labels[z]
        slab = None
        if self.volumetric:
            start, stop = slab_bounds(z, case.volume.n_slices, self.slab_depth)
            slab = Slab(case.images[start:stop], z - start, case.volume.hu[start:stop], labels)
        self.set_slice(case.images[z], labels, hu=case.volume.hu[z], slab=slab)
        return z

    def latent_mean_and_sigma(self) -> dict[str, np.ndarray]:
        """The encoder's mean and standard deviation of z_phi and z_b for the current slice."""
        s = self._stats
        return {"mu_phi": s.mu_phi[0].cpu().numpy(), "sigma_phi": torch.exp(0.5 * s.logvar_phi[0]).cpu().numpy(),
                "mu_b": s.mu_b[0].cpu().numpy(), "sigma_b": torch.exp(0.5 * s.logvar_b[0]).cpu().numpy()}

    def _deviates(self, values) -> torch.Tensor | None:
        if values is None:
            return None
        d = self.latent_dim
        values = np.asarray(values, dtype=np.float32)
        if values.size != d:
            raise AdvsegError(f"expected {d} latent deviates, got {values.size}")
        return torch.as_tensor(values).reshape(1, d).to(self.device)

    def _fields(self, x, features, stats, gate, hu, code: LatentCode):
        """Fields and adversarial images of slices ``x`` ``(B, 1, H, W)`` (encoded already) for one code:
        ``(displacement, bias, x_adv, hu_adv)``."""
        cfg = self.config
        z_phi, z_b = self.generator.latent_codes(stats, self._deviates(code.eps_phi), self._deviates(code.eps_b),
                                                 code.temperature)
        displacement, bias = self.generator.limit_rho(
            x, *self.generator.decode(features, z_phi, z_b, tuple(x.shape[-2:]), gate), self.input_range)
        if not code.use_phi:
            displacement = torch.zeros_like(displacement)
        if not code.use_bias:
            bias = torch.zeros_like(bias)
        if code.rho is not None:
            scaled = scale_to_rho(x, displacement, bias, code.rho, bias_mode=cfg.bias_mode, use_phi=code.use_phi,
                                  use_bias=code.use_bias, input_range=self.input_range)
            displacement, bias = scaled.displacement, scaled.bias
        x_adv, hu_adv = network_input(x, displacement, bias, cfg.bias_mode, code.use_phi, code.use_bias,
                                      self.input_range, hu, self.scale)
        return displacement, bias, x_adv, hu_adv

    @torch.no_grad()
    def render_fields(self, eps_phi=None, eps_b=None, temperature: float = 1.0, use_phi: bool = True,
                      use_bias: bool = True, folds: bool = True, rho: float | None = None) -> SliceView:
        """Stage one: fields, adversarial image, warped reference and rho for latent deviates.

        ``eps_*`` are standard deviations around the encoder's mean (length
        ``latent_dim``); None means the mean. ``use_phi`` / ``use_bias``
        switch a field off (it is then zero) without retraining. ``folds``:
        whether to count folded pixels (``fold_fraction`` is NaN without;
        :meth:`segment` counts them then). ``rho``: both fields scaled (up or
        down, past a ``rho_max`` budget too) so that the slice's rho is this
        (:func:`~napari_advseg.attack.strength.scale_to_rho`; the view's
        ``rho`` is the one reached); None: the generator's own.
        The view has no adversarial segmentation and no Dice yet (:meth:`segment`);
        no network runs here.
        """
        if self._x is None:
            raise AdvsegError("no slice to render: call SliceExplorer.set_slice() first")
        x = self._x
        cfg = self.config
        code = LatentCode(None if eps_phi is None else np.asarray(eps_phi, np.float32).copy(),
                          None if eps_b is None else np.asarray(eps_b, np.float32).copy(), float(temperature),
                          bool(use_phi and cfg.use_phi), bool(use_bias and cfg.use_bias), rho)
        displacement, bias, x_adv, hu_adv = self._fields(x, self._features, self._stats, self._gate, self._hu, code)
        reference, clean, dice_clean = self._reference, self._clean_uint8, self._dice_clean
        known = None if self._slab is None else self._slab.known_clean()
        if known is not None:  # a volumetric target's clean prediction, made by an earlier stage two
            clean, dice_clean = known
            if reference is None:
                reference = torch.as_tensor(clean).long()[None].to(self.device)
        warped = None
        if reference is not None:
            warped = (warp_labels(reference, displacement) if code.use_phi else reference)[0]
            warped = warped.to(torch.uint8).cpu().numpy()
        return SliceView(
            adversarial=x_adv[0, 0].cpu().numpy(),
            displacement=displacement[0].cpu().numpy(),
            bias=bias[0, 0].cpu().numpy(),
            clean_segmentation=clean,
            adversarial_segmentation=None,
            warped_reference=warped,
            rho=float(perceptibility(x_adv, x)),
            fold_fraction=(fold_fraction(displacement) if code.use_phi else 0.0) if folds else math.nan,
            adversarial_hu=None if hu_adv is None else hu_adv[0],
            dice_clean=dice_clean,
            code=code,
            slab=self._slab,
        )

    @torch.no_grad()
    def adversarial_slab(self, view: SliceView) -> torch.Tensor:
        """The adversarial slab ``(D, 1, H, W)`` of a volumetric target's view: its neighbours' fields with
        the view's code, and the view's own adversarial slice in the middle."""
        slab = view.slab
        x_adv = torch.as_tensor(np.asarray(view.adversarial, np.float32))[None, None]
        if slab is None or slab.depth == 1:
            return x_adv
        x, features, stats, gate = slab.encoded(self.generator)
        hu = None if slab.hu is None or self.scale is None else slab.hu[slab.neighbours]
        out = torch.empty((slab.depth, 1) + tuple(x_adv.shape[-2:]), dtype=torch.float32)
        out[slab.centre] = x_adv[0]
        for start in range(0, len(x), SLAB_BATCH):  # a few slices at a time: the decoder's memory stays bounded
            part = slice(start, start + SLAB_BATCH)
            part_stats = LatentStats(stats.mu_phi[part], stats.logvar_phi[part], stats.mu_b[part],
                                     stats.logvar_b[part])
            _, _, adversarial, _ = self._fields(x[part], features[part], part_stats,
                                                None if gate is None else gate[part],
                                                None if hu is None else hu[part], view.code)
            out[slab.neighbours[part]] = adversarial.cpu()
        return out

    @torch.no_grad()
    def segment(self, view: SliceView) -> SliceView:
        """Stage two: the target's segmentation of ``view.adversarial`` and the per-organ Dice.

        Fills ``view.adversarial_segmentation`` and ``view.organs`` in place,
        and ``view.fold_fraction`` if stage one left it out (and returns the
        view). Uses only the view's own arrays (a volumetric target's: its
        slab), so it may run after the explorer has moved on to other codes.
        A volumetric target segments the whole adversarial slab
        (:meth:`adversarial_slab`) and keeps the explored slice; the view's
        clean segmentation, clean Dice and (label-free) warped reference are
        filled here then.
        """
        if math.isnan(view.fold_fraction):
            view.fold_fraction = fold_fraction(torch.as_tensor(view.displacement)[None])
        slab = view.slab
        if slab is None:
            x_adv = torch.as_tensor(np.asarray(view.adversarial, np.float32))[None, None]
            adv_seg = self.target(x_adv.to(self.target.device)).argmax(dim=1).cpu()
        else:
            clean, view.dice_clean = slab.clean(self.target)
            view.clean_segmentation = clean
            if view.warped_reference is None:
                reference = torch.as_tensor(clean if slab.labels is None else slab.labels).long()[None]
                use_phi = view.code is None or view.code.use_phi
                warped = warp_labels(reference, torch.as_tensor(view.displacement)[None]) if use_phi else reference
                view.warped_reference = warped[0].to(torch.uint8).numpy()
            logits = self.target(self.adversarial_slab(view).to(self.target.device))
            adv_seg = logits.argmax(dim=1)[slab.centre][None].cpu()
        view.adversarial_segmentation = adv_seg[0].to(torch.uint8).numpy()
        names = list(self.target.class_names)
        adv = dice_per_organ(adv_seg, torch.as_tensor(view.warped_reference)[None], names)
        view.organs = {name: organ_row(view.dice_clean[name], adv[name]) for name in names[1:]
                       if not math.isnan(view.dice_clean[name])}
        return view

    def render(self, eps_phi=None, eps_b=None, temperature: float = 1.0, use_phi: bool = True,
               use_bias: bool = True, segment: bool = True, rho: float | None = None) -> SliceView:
        """Both stages: :meth:`render_fields`, then (with ``segment``) :meth:`segment`."""
        view = self.render_fields(eps_phi, eps_b, temperature, use_phi, use_bias, rho=rho)
        return self.segment(view) if segment else view


def displacement_vectors(displacement: np.ndarray, max_arrows: int = 2000, scale: float = 1.0,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A displacement field ``(2, H, W)`` as napari Vectors on a regular subsampled grid.

    Returns ``(vectors, magnitude)``: vectors ``(N, 2, 2)`` of (start, direction)
    in (row, column) data order with N <= ``max_arrows``, and each arrow's
    length in pixels (for colouring). Each arrow points from a pixel ``p`` to
    where the image content shown there comes from (``p + phi(p)``).
    """
    _, h, w = displacement.shape
    step = max(1, math.ceil(math.sqrt(h * w / max_arrows)))
    while math.ceil(h / step) * math.ceil(w / step) > max_arrows:
        step += 1
    rows, cols = np.meshgrid(np.arange(step // 2, h, step), np.arange(step // 2, w, step), indexing="ij")
    dy = displacement[0][rows, cols]
    dx = displacement[1][rows, cols]
    starts = np.stack((rows.ravel(), cols.ravel()), axis=1).astype(np.float32)
    directions = scale * np.stack((dy.ravel(), dx.ravel()), axis=1).astype(np.float32)
    return np.stack((starts, directions), axis=1), np.hypot(dy.ravel(), dx.ravel()).astype(np.float32)
