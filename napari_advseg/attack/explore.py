"""Interactive exploration of a generator's latent space on one slice (no Qt here).

The encoder and the clean segmentation run once per slice
(:meth:`SliceExplorer.set_slice`); every slider change then only decodes the
fields from new latent codes and warps (stage one), and re-segments (stage
two, which a viewer can show later), which is what keeps a slider drag
interactive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.apply import network_input, target_input_range
from napari_advseg.data.overlap import dice_per_organ, organ_row
from napari_advseg.attack.fields import fold_fraction, perceptibility, warp_labels
from napari_advseg.attack.strength import scale_to_rho
from napari_advseg.errors import AdvsegError


@dataclass
class SliceView:
    """Everything the viewer shows for one slice and one latent code.

    adversarial : (H, W) the network's input, normalised intensities
    adversarial_hu : (H, W) HU of the adversarial slice (None unless the slice's HU were given)
    displacement : (2, H, W) pixels (dy, dx)
    bias : (H, W) normalised units
    clean_segmentation, adversarial_segmentation : (H, W) uint8, or None when not asked for
    warped_reference : (H, W) uint8 (reference labels, or the clean prediction without them)
    organs : per-organ {"dice_clean", "dice_adv", "drop", "success"} of this slice (empty until segmented)
    rho : the slice's perceptibility (Eq. 7)
    fold_fraction : fraction of pixels where the deformation folds (NaN when not counted)
    dice_clean : per-organ Dice of the clean segmentation (NaN where the organ is absent)
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
        self.input_range = target_input_range(target)
        self._hu: np.ndarray | None = None
        self.device = next(generator.parameters()).device
        self._x: torch.Tensor | None = None
        self._features: torch.Tensor | None = None
        self._stats = None
        self._reference: torch.Tensor | None = None
        self._clean_uint8: np.ndarray | None = None
        self._dice_clean: dict[str, float] = {}

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def set_slice(self, image: np.ndarray, labels: np.ndarray | None = None, hu: np.ndarray | None = None) -> None:
        """Encode a normalised slice ``(H, W)``; labels ``(H, W)`` are its reference (optional);
        ``hu`` ``(H, W)`` its Hounsfield units (used with the explorer's ``scale``).

        What does not depend on the latent code is computed here once: the
        clean segmentation and its Dice against the reference.
        """
        x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None].to(self.device)
        self._hu = None if hu is None or self.scale is None else np.asarray(hu, np.float32)[None]
        self._x = x
        self._features, self._stats = self.generator.encode(x)
        self._gate = self.generator.displacement_gate(x)
        clean = self.target(x.to(self.target.device)).argmax(dim=1).cpu()
        reference = clean if labels is None else torch.as_tensor(np.asarray(labels)).long()[None]
        self._reference = reference.to(self.device)
        self._clean_uint8 = clean[0].to(torch.uint8).numpy()
        self._dice_clean = dice_per_organ(clean, reference, list(self.target.class_names))

    def latent_mean_and_sigma(self) -> dict[str, np.ndarray]:
        """The encoder's mean and standard deviation of z_phi and z_b for the current slice."""
        s = self._stats
        return {"mu_phi": s.mu_phi[0].cpu().numpy(), "sigma_phi": torch.exp(0.5 * s.logvar_phi[0]).cpu().numpy(),
                "mu_b": s.mu_b[0].cpu().numpy(), "sigma_b": torch.exp(0.5 * s.logvar_b[0]).cpu().numpy()}

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
        The view has no adversarial segmentation and no Dice yet (:meth:`segment`).
        """
        if self._x is None:
            raise AdvsegError("no slice to render: call SliceExplorer.set_slice() first")
        x = self._x
        d = self.latent_dim

        def deviates(values):
            if values is None:
                return None
            values = np.asarray(values, dtype=np.float32)
            if values.size != d:
                raise AdvsegError(f"expected {d} latent deviates, got {values.size}")
            return torch.as_tensor(values).reshape(1, d).to(self.device)

        z_phi, z_b = self.generator.latent_codes(self._stats, deviates(eps_phi), deviates(eps_b), temperature)
        displacement, bias = self.generator.limit_rho(
            x, *self.generator.decode(self._features, z_phi, z_b, tuple(x.shape[-2:]), self._gate),
            self.input_range)
        cfg = self.config
        use_phi = use_phi and cfg.use_phi
        use_bias = use_bias and cfg.use_bias
        if not use_phi:
            displacement = torch.zeros_like(displacement)
        if not use_bias:
            bias = torch.zeros_like(bias)
        if rho is not None:
            scaled = scale_to_rho(x, displacement, bias, rho, bias_mode=cfg.bias_mode, use_phi=use_phi,
                                  use_bias=use_bias, input_range=self.input_range)
            displacement, bias = scaled.displacement, scaled.bias
        x_adv, hu_adv = network_input(x, displacement, bias, cfg.bias_mode, use_phi, use_bias, self.input_range,
                                      self._hu, self.scale)
        reference = self._reference
        warped = warp_labels(reference, displacement) if use_phi else reference
        return SliceView(
            adversarial=x_adv[0, 0].cpu().numpy(),
            displacement=displacement[0].cpu().numpy(),
            bias=bias[0, 0].cpu().numpy(),
            clean_segmentation=self._clean_uint8,
            adversarial_segmentation=None,
            warped_reference=warped[0].to(torch.uint8).cpu().numpy(),
            rho=float(perceptibility(x_adv, x)),
            fold_fraction=(fold_fraction(displacement) if use_phi else 0.0) if folds else math.nan,
            adversarial_hu=None if hu_adv is None else hu_adv[0],
            dice_clean=self._dice_clean,
        )

    @torch.no_grad()
    def segment(self, view: SliceView) -> SliceView:
        """Stage two: the target's segmentation of ``view.adversarial`` and the per-organ Dice.

        Fills ``view.adversarial_segmentation`` and ``view.organs`` in place,
        and ``view.fold_fraction`` if stage one left it out (and returns the
        view). Uses only the view's own arrays, so it may run after the
        explorer has moved on to other codes.
        """
        if math.isnan(view.fold_fraction):
            view.fold_fraction = fold_fraction(torch.as_tensor(view.displacement)[None])
        x_adv = torch.as_tensor(np.asarray(view.adversarial, np.float32))[None, None]
        adv_seg = self.target(x_adv.to(self.target.device)).argmax(dim=1).cpu()
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
