"""Intensity scaling: how Hounsfield units become the target network's input intensities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_advseg.errors import AdvsegError

__all__ = ["DEFAULT_RANGE", "DEFAULT_WINDOW", "NORMALISATION_MODES", "IntensityScale", "fit_intensity_scale",
           "scale_for"]

NORMALISATION_MODES = ("zscore", "window", "ct", "none")
"""How HU become network intensities: per-volume z-score; an HU window mapped linearly to an output
range; nnU-Net's CT scheme (clip to fixed HU bounds, subtract a fixed mean, divide by a fixed
standard deviation); or none (HU as they are)."""

DEFAULT_RANGE: tuple[float, float] = (-1.0, 1.0)
"""The output range a window is mapped to when its normalisation names none."""

DEFAULT_WINDOW: tuple[float, float] = (-200.0, 300.0)
"""The default soft-tissue HU window (window normalisation and the CT display range)."""


@dataclass(frozen=True)
class IntensityScale:
    """Map between Hounsfield units and the network's input intensities.

    ``x = (clip(hu, clip_low, clip_high) - offset) / scale``; the inverse
    (:meth:`to_hu`) is ``hu = x * scale + offset``. Where the mode clips
    (``'window'``, ``'ct'``), :meth:`to_hu` inverts :meth:`apply` only inside
    the clip range: values clipped away are not recovered.

    Attributes
    ----------
    mode : str
        ``'zscore'`` (per-volume zero mean, unit standard deviation),
        ``'window'`` (clip to an HU window, map it linearly to an output
        range, [-1, 1] by default), ``'ct'`` (clip to fixed HU bounds, then a
        fixed mean and standard deviation) or ``'none'`` (HU unchanged:
        offset 0, scale 1).
    offset : float
        HU subtracted first (the mean, or the HU that maps to 0).
    scale : float
        HU per unit of ``x`` (the standard deviation, or the window width
        over the output range's width); positive.
    clip_low, clip_high : float or None
        HU clipping bounds applied before scaling; ``None`` for no bound.
    """

    mode: str
    offset: float
    scale: float
    clip_low: float | None = None
    clip_high: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in NORMALISATION_MODES:
            raise AdvsegError(f"unknown intensity scaling mode {self.mode!r}: choose one of {', '.join(NORMALISATION_MODES)}")
        try:
            offset, scale = float(self.offset), float(self.scale)
            low = None if self.clip_low is None else float(self.clip_low)
            high = None if self.clip_high is None else float(self.clip_high)
        except (TypeError, ValueError):
            raise AdvsegError(f"intensity scale values must be numbers, got {self!r}") from None
        if not (np.isfinite(offset) and np.isfinite(scale) and scale > 0):
            raise AdvsegError(
                f"intensity scale needs a finite offset and a positive scale, got offset={offset}, scale={scale}"
            )
        for bound in (low, high):
            if bound is not None and not np.isfinite(bound):
                raise AdvsegError(f"intensity clip bounds must be finite, got {low}, {high}")
        if low is not None and high is not None and low >= high:
            raise AdvsegError(f"intensity clip_low ({low}) must be below clip_high ({high})")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "clip_low", low)
        object.__setattr__(self, "clip_high", high)

    def apply(self, hu) -> np.ndarray:
        """Hounsfield units -> network intensities.

        Parameters
        ----------
        hu : array_like
            Values in HU.

        Returns
        -------
        numpy.ndarray
            float32 array of the same shape, dimensionless.
        """
        values = np.asarray(hu, dtype=np.float32)
        if self.clip_low is not None or self.clip_high is not None:
            low = -np.inf if self.clip_low is None else self.clip_low
            high = np.inf if self.clip_high is None else self.clip_high
            values = np.clip(values, np.float32(low), np.float32(high))
        return ((values - np.float32(self.offset)) / np.float32(self.scale)).astype(np.float32, copy=False)

    def to_hu(self, x) -> np.ndarray:
        """Network intensities -> Hounsfield units (``x * scale + offset``).

        Parameters
        ----------
        x : array_like
            Dimensionless network intensities.

        Returns
        -------
        numpy.ndarray
            float32 array of HU, same shape.
        """
        values = np.asarray(x, dtype=np.float32)
        return (values * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dictionary of the fields (HU as floats)."""
        return {
            "mode": self.mode,
            "offset": self.offset,
            "scale": self.scale,
            "clip_low": self.clip_low,
            "clip_high": self.clip_high,
        }

    @classmethod
    def from_dict(cls, d: dict) -> IntensityScale:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        AdvsegError
            Missing or unknown keys, or invalid values.
        """
        if not isinstance(d, dict):
            raise AdvsegError(f"intensity scale must be a dictionary, got {type(d).__name__}")
        allowed = {"mode", "offset", "scale", "clip_low", "clip_high"}
        missing = {"mode", "offset", "scale"} - d.keys()
        unknown = d.keys() - allowed
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(sorted(missing))}")
            if unknown:
                parts.append(f"unknown {', '.join(sorted(map(str, unknown)))}")
            raise AdvsegError(f"bad intensity scale dictionary: {'; '.join(parts)}")
        return cls(
            mode=d["mode"],
            offset=d["offset"],
            scale=d["scale"],
            clip_low=d.get("clip_low"),
            clip_high=d.get("clip_high"),
        )


def fit_intensity_scale(
    hu,
    mode: str = "zscore",
    window: tuple[float, float] = DEFAULT_WINDOW,
    *,
    output_range: tuple[float, float] = DEFAULT_RANGE,
    clip: tuple[float, float] | None = None,
    mean: float | None = None,
    std: float | None = None,
) -> IntensityScale:
    """Choose the intensity scaling for a volume.

    Parameters
    ----------
    hu : array_like
        The volume in HU (any shape).
    mode : {'zscore', 'window', 'ct', 'none'}, optional
        ``'zscore'``: offset and scale are the mean and standard deviation of
        the whole volume (normalised per volume to zero mean and unit standard
        deviation), no clipping. ``'window'``: clip to ``window`` and map it
        linearly to ``output_range``. ``'ct'``: clip to ``clip`` (HU), subtract
        ``mean`` (HU), divide by ``std`` (HU). ``'none'``: HU as they are.
        Outside ``'zscore'`` the data are only checked, not used.
    window : (float, float), optional
        ``(low, high)`` HU window for ``'window'`` mode.
    output_range : (float, float), optional
        ``(a, b)``, ``a < b``: what ``window`` maps to (``'window'`` mode);
        default ``(-1, 1)``.
    clip, mean, std : optional
        ``'ct'`` mode's fixed HU bounds ``(low, high)``, mean and standard
        deviation (HU, ``std > 0``).

    Returns
    -------
    IntensityScale

    Raises
    ------
    AdvsegError
        Unknown mode, empty or non-finite data, a constant volume (standard
        deviation 0) in ``'zscore'`` mode, a window, range or clip with
        ``low >= high``, or missing or invalid ``'ct'`` values.
    """
    if mode not in NORMALISATION_MODES:
        raise AdvsegError(f"unknown intensity scaling mode {mode!r}: choose one of {', '.join(NORMALISATION_MODES)}")
    values = np.asarray(hu)
    if values.size == 0:
        raise AdvsegError("cannot fit an intensity scale to an empty volume")
    if not np.all(np.isfinite(values)):
        raise AdvsegError("cannot fit an intensity scale: the volume holds NaN or infinite values")
    if mode == "zscore":
        mean = float(np.mean(values, dtype=np.float64))
        std = float(np.std(values, dtype=np.float64))
        if not std > 0:
            raise AdvsegError(f"cannot z-score a constant volume (every voxel is {mean:g} HU)")
        return IntensityScale(mode="zscore", offset=mean, scale=std)
    if mode == "none":
        return IntensityScale(mode="none", offset=0.0, scale=1.0)
    if mode == "ct":
        low, high = _pair(clip, "the CT clip bounds (HU)")
        if mean is None or std is None:
            raise AdvsegError("the 'ct' normalisation needs a fixed mean and std (HU)")
        return IntensityScale(mode="ct", offset=mean, scale=std, clip_low=low, clip_high=high)
    low, high = _pair(window, "the HU window")
    a, b = _pair(output_range, "the window's output range")
    # offset and scale written so that the default range (-1, 1) gives exactly (low + high) / 2 and (high - low) / 2
    return IntensityScale(
        mode="window",
        offset=(b * low - a * high) / (b - a),
        scale=(high - low) / (b - a),
        clip_low=low,
        clip_high=high,
    )


def _pair(values, what: str) -> tuple[float, float]:
    """Two finite floats ``low < high``; AdvsegError naming ``what`` otherwise."""
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise AdvsegError(f"{what} must be two numbers (low, high), got {values!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise AdvsegError(f"{what} must have low < high, got {values!r}")
    return low, high


def scale_for(hu: np.ndarray, normalisation: dict | None) -> IntensityScale:
    """The intensity scaling a target expects.

    ``normalisation`` is one of ``{"mode": "zscore"}`` (also for None),
    ``{"mode": "window", "window": [lo, hi], "range": [a, b]}`` (``range``
    optional, default [-1, 1]), ``{"mode": "ct", "clip": [lo, hi], "mean": m,
    "std": s}`` or ``{"mode": "none"}``; HU throughout.
    """
    normalisation = normalisation or {"mode": "zscore"}
    window = tuple(normalisation.get("window", DEFAULT_WINDOW))
    return fit_intensity_scale(
        hu,
        normalisation.get("mode", "zscore"),
        window,
        output_range=tuple(normalisation.get("range", DEFAULT_RANGE)),
        clip=normalisation.get("clip"),
        mean=normalisation.get("mean"),
        std=normalisation.get("std"),
    )
