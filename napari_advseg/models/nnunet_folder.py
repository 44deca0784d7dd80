"""nnU-Net v2 trained-model folders as targets, with inference equal to nnU-Net's and gradients.

A trained-model folder (``DatasetXXX_Name/nnUNetTrainer__nnUNetPlans__2d``)
holds ``dataset.json`` (channels, labels), ``plans.json`` (preprocessing and
the network of each configuration) and ``fold_K/checkpoint_final.pth`` (or
``checkpoint_best.pth``) per fold. :func:`read_nnunet_folder` checks them and
builds each fold's network the way nnU-Net does: the class the plans name
(from dynamic-network-architectures, the library nnU-Net's networks come
from), called with the plans' keyword arguments, deep supervision off, and the
checkpoint's ``network_weights`` read with ``torch.load(weights_only=True)``.
nnU-Net itself is not needed.

:meth:`NnUNetModel.logits` is nnU-Net's prediction of one image
(``nnUNetPredictor.predict_single_npy_array``) written with ``torch``
operations that keep the graph:

1. the plans' ``transpose_forward``;
2. the crop to the bounding box of the nonzero voxels (outside it the
   prediction is background);
3. the configuration's normalisation: ``CTNormalization`` (clip to the
   foreground's 0.5 and 99.5 percentiles, subtract its mean, divide by its
   std, all from ``foreground_intensity_properties_per_channel``),
   ``ZScoreNormalization`` (per image, inside the nonzero mask when
   ``use_mask_for_norm``), ``NoNormalization``, ``RescaleTo01Normalization``;
4. resampling to the configuration's spacing
   (:func:`~napari_advseg.models.resample.resize_like_nnunet`, spline order 3,
   the low-resolution axis apart with order 0 when the spacing is anisotropic);
5. the sliding window over the patch size with nnU-Net's steps and Gaussian
   (:mod:`napari_advseg.models.sliding_window`), mirroring along the
   checkpoint's allowed axes when asked, the folds' logits averaged;
6. the logits resampled back (order 1), put back into the uncropped volume,
   ``transpose_backward``.

The image is given in nnU-Net's own array order, the order its SimpleITK
reader gives (``(z, y, x)`` of the file), with the spacing in that order.
"""

from __future__ import annotations

import json
import pickle
import pydoc
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.models.resample import new_shape_for_spacing, resize_like_nnunet, separate_z_axis
from napari_advseg.models.sliding_window import nnunet_gaussian, nnunet_starts, round_to, sliding_window
from napari_advseg.models.target import freeze, load_fitting_weights
from napari_advseg.seeding import seeded_build

__all__ = [
    "CHECKPOINT_NAMES",
    "NNUNET_EXTRA",
    "NnUNetModel",
    "NnUNetPlan",
    "is_nnunet_folder",
    "read_nnunet_folder",
]

NNUNET_EXTRA = 'pip install "napari-advseg[nnunet]"'
"""The install line an nnU-Net folder needs."""
CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth")
"""Checkpoint files looked for in each fold folder, first found wins."""
SCHEMES = ("CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization")
"""nnU-Net normalisation schemes this module reproduces."""
_RESAMPLER = "resample_data_or_seg_to_shape"
_ARCH_PREFIX = "dynamic_network_architectures.architectures."
_IMPORT_PREFIX = "torch.nn."
_EPS = 1e-8
_BACKGROUND_LOGIT = 1e4
"""Background's margin over every other class outside the nonzero crop (nnU-Net predicts background there)."""


def is_nnunet_folder(path: Path) -> bool:
    """True for a folder that looks like an nnU-Net trained-model folder (``plans.json`` or ``fold_*`` inside)."""
    path = Path(path)
    return path.is_dir() and ((path / "plans.json").exists() or any(path.glob("fold_*")))


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"is missing: an nnU-Net trained-model folder needs {path.name} ({what})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"cannot be read as JSON: {first_line(error)}") from None
    if not isinstance(data, dict):
        raise InputFileError(path, f"holds a {type(data).__name__}, expected a JSON object")
    return data


# --------------------------------------------------------------------------
# the plans
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NnUNetPlan:
    """What one configuration of ``plans.json`` says about preprocessing and prediction."""

    configuration: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    scheme: str
    use_mask_for_norm: bool
    intensity: dict
    data_resampling: dict
    logits_resampling: dict
    architecture: dict

    @property
    def is_2d(self) -> bool:
        """A 2D configuration: slices along the first (transposed) axis, each predicted on its own."""
        return len(self.patch_size) == 2

    def normalisation(self) -> dict | None:
        """The scheme as a project normalisation dict (HU), or None when it has no such form."""
        if self.scheme == "CTNormalization":
            return {"mode": "ct", "clip": [float(self.intensity["percentile_00_5"]),
                                           float(self.intensity["percentile_99_5"])],
                    "mean": float(self.intensity["mean"]), "std": max(float(self.intensity["std"]), _EPS)}
        if self.scheme == "ZScoreNormalization" and not self.use_mask_for_norm:
            return {"mode": "zscore"}
        if self.scheme == "NoNormalization":
            return {"mode": "none"}
        return None


def _configuration(plans: dict, name: str, path: Path) -> dict:
    """The configuration ``name`` with what it inherits (``inherits_from``) filled in."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict):
        raise InputFileError(path, "has no 'configurations'")
    if name not in configurations:
        raise InputFileError(path, f"has no configuration {name!r} (it has {', '.join(configurations) or 'none'})")
    chain, seen = [], set()
    current = name
    while current is not None:
        if current in seen or current not in configurations:
            raise InputFileError(path, f"configuration {name!r} inherits from {current!r}, which is missing or circular")
        seen.add(current)
        chain.append(configurations[current])
        current = configurations[current].get("inherits_from")
    merged: dict = {}
    for part in reversed(chain):
        merged.update(part)
    if merged.get("previous_stage") or "cascade" in name:
        raise InputFileError(
            path, f"configuration {name!r} is a cascade stage (it needs the segmentation of "
                  f"{merged.get('previous_stage') or 'a previous stage'}); cascades are not supported, use 2d or 3d_fullres")
    return merged


def _resampling(config: dict, key: str, order: int, path: Path) -> dict:
    name = str(config.get(f"resampling_fn_{key}", _RESAMPLER))
    if name.rsplit(".", 1)[-1] != _RESAMPLER:
        raise InputFileError(path, f"resampling_fn_{key} {name!r} is not supported (only {_RESAMPLER})")
    kwargs = dict(config.get(f"resampling_fn_{key}_kwargs") or {})
    return {"order": int(kwargs.get("order", order)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z")}


def read_plan(plans: dict, name: str, path: Path) -> NnUNetPlan:
    """The :class:`NnUNetPlan` of configuration ``name`` of ``plans`` (read from ``path``)."""
    config = _configuration(plans, name, path)
    for key in ("spacing", "patch_size", "normalization_schemes"):
        if key not in config:
            raise InputFileError(path, f"configuration {name!r} has no {key!r}")
    if "architecture" not in config:
        raise InputFileError(path, f"configuration {name!r} has no 'architecture' (plans of nnU-Net 2.4 or newer "
                                   "name the network class and its arguments there)")
    scheme = str(config["normalization_schemes"][0])
    if scheme not in SCHEMES:
        raise InputFileError(path, f"normalisation scheme {scheme!r} is not supported (supported: {', '.join(SCHEMES)})")
    intensity = (plans.get("foreground_intensity_properties_per_channel") or {}).get("0")
    if scheme == "CTNormalization":
        needed = ("mean", "std", "percentile_00_5", "percentile_99_5")
        if not isinstance(intensity, dict) or any(k not in intensity for k in needed):
            raise InputFileError(path, "CTNormalization needs foreground_intensity_properties_per_channel['0'] with "
                                       + ", ".join(needed))
    transpose_forward = tuple(int(i) for i in plans.get("transpose_forward", (0, 1, 2)))
    transpose_backward = tuple(int(i) for i in plans.get("transpose_backward", np.argsort(transpose_forward)))
    patch = tuple(int(p) for p in config["patch_size"])
    spacing = tuple(float(s) for s in config["spacing"])
    if len(patch) not in (2, 3) or len(spacing) != len(patch):
        raise InputFileError(path, f"configuration {name!r} has patch_size {list(patch)} and spacing {list(spacing)}; "
                                   "expected 2 or 3 entries each")
    use_mask = config.get("use_mask_for_norm") or [False]
    return NnUNetPlan(name, transpose_forward, transpose_backward, spacing, patch, scheme, bool(use_mask[0]),
                      dict(intensity or {}), _resampling(config, "data", 3, path),
                      _resampling(config, "probabilities", 1, path), dict(config["architecture"]))


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------


def _require_architectures(folder: Path):
    try:
        import dynamic_network_architectures  # noqa: F401
    except ImportError:
        raise AdvsegError(f"{folder} is an nnU-Net trained-model folder; reading it needs the nnU-Net extra: "
                          f"{NNUNET_EXTRA}") from None


def build_network(plan: NnUNetPlan, n_classes: int, plans_path: Path) -> nn.Module:
    """The network the plans describe: ``network_class_name(input_channels=1, num_classes=..., **arch_kwargs)``.

    Only classes of ``dynamic_network_architectures.architectures`` are built,
    and the arguments it imports (``_kw_requires_import``) must name ``torch.nn``
    objects: a plans file cannot make this call anything else.
    """
    arch = plan.architecture
    class_name = str(arch.get("network_class_name", ""))
    if not class_name.startswith(_ARCH_PREFIX):
        raise InputFileError(plans_path, f"names the architecture class {class_name!r} for {plan.configuration!r}; "
                                         f"only classes of {_ARCH_PREFIX[:-1]} are built")
    network_class = pydoc.locate(class_name)
    if not isinstance(network_class, type) or not issubclass(network_class, nn.Module):
        raise InputFileError(plans_path, f"names an unknown architecture class {class_name!r} (not found in the "
                                         "installed dynamic-network-architectures)")
    kwargs = dict(arch.get("arch_kwargs") or {})
    for key in arch.get("_kw_requires_import") or ():
        value = kwargs.get(key)
        if value is None:
            continue
        located = pydoc.locate(str(value)) if str(value).startswith(_IMPORT_PREFIX) else None
        if located is None:
            raise InputFileError(plans_path, f"architecture argument {key}={value!r} is not a torch.nn class")
        kwargs[key] = located
    kwargs["deep_supervision"] = False
    try:
        with seeded_build(None):
            return network_class(input_channels=1, num_classes=n_classes, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure of the class on these arguments is the plans' fault
        raise InputFileError(plans_path, f"architecture {class_name.rsplit('.', 1)[-1]} cannot be built from its "
                                         f"arch_kwargs: {first_line(error)}") from None


def _safe_globals() -> list:
    """numpy scalars and dtypes that nnU-Net checkpoints hold in their logs (plain data, no code)."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    names = [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    names += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return names


def read_checkpoint(path: Path) -> dict:
    """An nnU-Net checkpoint, read with ``torch.load(weights_only=True)`` (numpy scalars allowed)."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_safe_globals()):
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f" ({match.group(1)})" if match else ""
        raise InputFileError(path, f"holds pickled Python objects{what} that are not loaded for safety; expected "
                                   "an nnU-Net checkpoint") from None
    except Exception as error:  # noqa: BLE001 - torch raises many kinds of errors for foreign files
        raise InputFileError(path, f"is not a readable torch checkpoint: {first_line(error)}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise InputFileError(path, "is not an nnU-Net checkpoint (no 'network_weights')")
    return checkpoint


def _load_weights(network: nn.Module, weights: dict, path: Path) -> None:
    state = {re.sub(r"^(_orig_mod\.|module\.)", "", k): v for k, v in weights.items()}
    load_fitting_weights(network, state, path, "the network the plans describe")


# --------------------------------------------------------------------------
# the folder
# --------------------------------------------------------------------------


def _class_names(dataset: dict, path: Path) -> tuple[str, ...]:
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputFileError(path, "has no 'labels' (name -> value)")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in labels.values()):
        raise InputFileError(path, "uses region-based labels (lists of values); only one value per class is supported")
    values = sorted(labels.values())
    if values != list(range(len(values))):
        raise InputFileError(path, f"has label values {values}; expected 0..{len(values) - 1}")
    by_value = {v: k for k, v in labels.items()}
    return tuple(by_value[v] for v in values)


def _channels(dataset: dict, path: Path) -> None:
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise InputFileError(path, "has no 'channel_names'")
    if len(channels) != 1:
        names = ", ".join(str(v) for v in channels.values())
        raise InputFileError(path, f"names {len(channels)} input channels ({names}); a CT gives one")


def _fold_folders(folder: Path) -> dict[str, Path]:
    def key(name):
        number = name.removeprefix("fold_")
        return (0, int(number), "") if number.isdigit() else (1, 0, number)

    return {p.name.removeprefix("fold_"): p for p in sorted(folder.glob("fold_*"), key=lambda p: key(p.name))
            if p.is_dir()}


def _checkpoint_file(fold_folder: Path, checkpoint: str | None) -> Path | None:
    names = (checkpoint,) if checkpoint else CHECKPOINT_NAMES
    for name in names:
        if (fold_folder / name).is_file():
            return fold_folder / name
    return None


@dataclass
class NnUNetModel:
    """A read nnU-Net trained-model folder: one configuration, one network per chosen fold (frozen).

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    plan : NnUNetPlan
    class_names : tuple of str
        From ``dataset.json``'s labels, ordered by value.
    networks : list of torch.nn.Module
        One per fold, eval mode, no gradients on the weights.
    folds : tuple of str
    checkpoints : tuple of pathlib.Path
    mirror_axes : tuple of int
        The checkpoint's ``inference_allowed_mirroring_axes`` (spatial axes).
    notes : list of str
        Choices made for want of a declaration.
    """

    path: Path
    plan: NnUNetPlan
    class_names: tuple[str, ...]
    networks: list[nn.Module]
    folds: tuple[str, ...]
    checkpoints: tuple[Path, ...]
    mirror_axes: tuple[int, ...]
    device: torch.device
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- steps
    def network_logits(self, x: torch.Tensor, *, step_size: float = 0.5, mirror: bool = False) -> torch.Tensor:
        """Sliding-window logits of a preprocessed ``(N, 1, *spatial)`` input, averaged over the folds."""
        patch = self.plan.patch_size
        weights = nnunet_gaussian(patch, device=x.device)
        axes = self.mirror_axes if mirror else ()
        total = None
        for network in self.networks:
            logits = sliding_window(x, network, patch, lambda size, p: nnunet_starts(size, p, step_size), weights,
                                    mirror_axes=axes, rounding=torch.float16)
            total = logits if total is None else total + logits
        return total / len(self.networks)

    def normalise(self, data: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The configuration's normalisation of ``(1, *spatial)`` HU (``mask``: the nonzero mask, for z-score)."""
        scheme, props = self.plan.scheme, self.plan.intensity
        if scheme == "CTNormalization":
            clipped = data.clamp(float(props["percentile_00_5"]), float(props["percentile_99_5"]))
            return (clipped - float(props["mean"])) / max(float(props["std"]), _EPS)
        if scheme == "ZScoreNormalization":
            if self.plan.use_mask_for_norm and mask is not None:
                inside = data[mask]
                mean, std = inside.mean(), inside.std(unbiased=False)
                return torch.where(mask, (data - mean) / std.clamp_min(_EPS), data)
            return (data - data.mean()) / data.std(unbiased=False).clamp_min(_EPS)
        if scheme == "RescaleTo01Normalization":
            shifted = data - data.min()
            return shifted / shifted.max().clamp_min(_EPS)
        return data

    def predict_normalised(self, data: torch.Tensor, spacing: Sequence[float], *, step_size: float = 0.5,
                           mirror: bool = False) -> torch.Tensor:
        """Steps 4-6 of nnU-Net's prediction: logits ``(C, *spatial)`` of normalised ``(1, *spatial)`` data.

        ``data`` is in the plans' transposed order, ``spacing`` (mm) along its
        axes. It is resampled to the configuration's spacing (a 2d
        configuration keeps the first axis), predicted by the sliding window,
        and the logits are resampled back to ``data``'s grid and rounded to
        half precision as nnU-Net's are. Shared by :meth:`logits` (a whole
        image) and the 3D slab target
        (:class:`~napari_advseg.models.folder_targets.NnUNetSlab`).
        """
        plan = self.plan
        shape = tuple(int(s) for s in data.shape[1:])
        spacing = [float(s) for s in spacing]
        target_spacing = list(plan.spacing) if not plan.is_2d else [spacing[0], *plan.spacing]
        new_shape = new_shape_for_spacing(shape, spacing, target_spacing)
        res = plan.data_resampling
        data = resize_like_nnunet(data, new_shape, order=res["order"], order_z=res["order_z"],
                                  separate_axis=separate_z_axis(spacing, target_spacing, res["force_separate_z"]))
        if plan.is_2d:
            logits = self.network_logits(data.permute(1, 0, 2, 3), step_size=step_size, mirror=mirror)
            logits = logits.permute(1, 0, 2, 3)
        else:
            logits = self.network_logits(data[None], step_size=step_size, mirror=mirror)[0]
        res = plan.logits_resampling
        logits = resize_like_nnunet(logits, shape, order=res["order"], order_z=res["order_z"],
                                    separate_axis=separate_z_axis(target_spacing, spacing, res["force_separate_z"]))
        return round_to(logits, torch.float16)

    def logits(self, image: torch.Tensor, spacing: Sequence[float], *, step_size: float = 0.5,
               mirror: bool = False) -> torch.Tensor:
        """nnU-Net's prediction of one image as logits, differentiable in ``image``.

        Parameters
        ----------
        image : torch.Tensor
            ``(D0, D1, D2)`` intensities (HU for CT) in nnU-Net's array order.
        spacing : sequence of 3 floats
            Voxel size (mm) along those axes.
        step_size : float
            Window step as a fraction of the patch (nnU-Net's default 0.5).
        mirror : bool
            Average over the mirror images along :attr:`mirror_axes` (nnU-Net's
            default; 2**axes network calls per window).

        Returns
        -------
        torch.Tensor
            ``(C, D0, D1, D2)`` logits on the image's grid; their argmax is
            nnU-Net's segmentation.
        """
        if image.ndim != 3 or len(spacing) != 3:
            raise AdvsegError(f"an nnU-Net target predicts a 3D image with 3 spacings, got shape "
                              f"{tuple(image.shape)} and spacing {list(spacing)}")
        plan = self.plan
        data = image.to(self.device, torch.float32).permute(*plan.transpose_forward)[None]
        spacing_t = [float(spacing[i]) for i in plan.transpose_forward]
        shape_before = tuple(data.shape[1:])
        nonzero = (data[0] != 0).detach().cpu().numpy()
        box = _bounding_box(nonzero)
        data = data[(slice(None), *box)]
        mask = None
        if plan.scheme == "ZScoreNormalization" and plan.use_mask_for_norm:
            from scipy.ndimage import binary_fill_holes

            mask = torch.as_tensor(binary_fill_holes(nonzero[box]), device=data.device)[None]
        cropped_shape = tuple(data.shape[1:])
        logits = self.predict_normalised(self.normalise(data, mask), spacing_t, step_size=step_size, mirror=mirror)
        if cropped_shape != shape_before:
            full = torch.full((logits.shape[0], *shape_before), -_BACKGROUND_LOGIT, device=logits.device)
            full[0] = 0.0
            full[(slice(None), *box)] = logits
            logits = full
        return logits.permute(0, *[i + 1 for i in plan.transpose_backward])


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` (the whole array when it is empty)."""
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _configuration_name(folder: Path, checkpoint: dict | None, configuration: str | None) -> str:
    if configuration:
        return configuration
    init = (checkpoint or {}).get("init_args") or {}
    if isinstance(init, dict) and isinstance(init.get("configuration"), str):
        return init["configuration"]
    if "__" in folder.name:
        return folder.name.rsplit("__", 1)[-1]
    raise InputFileError(folder, "does not say its configuration (no init_args in the checkpoint and a folder name "
                                 "not like Trainer__Plans__CONFIGURATION); give one (2d or 3d_fullres)")


def read_nnunet_folder(
    folder: str | Path,
    *,
    folds: Sequence[str | int] | None = None,
    configuration: str | None = None,
    checkpoint: str | None = None,
    device: torch.device | str = "cpu",
) -> NnUNetModel:
    """Read and check an nnU-Net v2 trained-model folder.

    Parameters
    ----------
    folder : path
        The trained-model folder (``dataset.json``, ``plans.json``, ``fold_K/``).
    folds : sequence of str or int, optional
        Folds to use (``0``, ``"all"``...); several make an ensemble (logits
        averaged, as nnU-Net does). Default: the first fold found (a note says so).
    configuration : str, optional
        Default: the checkpoint's (``init_args``), else the folder name's last
        ``__`` part.
    checkpoint : str, optional
        Checkpoint file name; default ``checkpoint_final.pth``, else
        ``checkpoint_best.pth``.
    device : torch.device or str

    Raises
    ------
    InputFileError
        Naming the file at fault: a missing ``dataset.json``, ``plans.json``
        or checkpoint, a configuration not in the plans, a cascade stage, an
        unknown architecture class, weights that do not fit, more than one
        input channel, region-based labels, an unsupported normalisation or
        resampling.
    AdvsegError
        When dynamic-network-architectures is not installed (naming the extra).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "is not a folder")
    dataset_path, plans_path = folder / "dataset.json", folder / "plans.json"
    dataset = _read_json(dataset_path, "its channels and labels")
    plans = _read_json(plans_path, "its preprocessing and network")
    _channels(dataset, dataset_path)
    class_names = _class_names(dataset, dataset_path)
    _require_architectures(folder)
    available = _fold_folders(folder)
    notes: list[str] = []
    if folds is None or len(folds) == 0:
        with_checkpoint = [f for f, p in available.items() if _checkpoint_file(p, checkpoint)]
        if not with_checkpoint:
            names = ", ".join(f"fold_K/{n}" for n in ((checkpoint,) if checkpoint else CHECKPOINT_NAMES))
            raise InputFileError(folder, f"has no checkpoint ({names}); found folds: "
                                         f"{', '.join(available) or 'none'}")
        chosen = [with_checkpoint[0]]
        if len(with_checkpoint) > 1:
            notes.append(f"{folder.name}: using fold {chosen[0]} of {len(with_checkpoint)} "
                         f"(--fold {','.join(with_checkpoint)} for their ensemble)")
    else:
        chosen = [str(f) for f in folds]
    paths, states, mirror_axes, ckpt = [], [], None, None
    for fold in chosen:
        fold_folder = folder / f"fold_{fold}"
        found = _checkpoint_file(fold_folder, checkpoint) if fold_folder.is_dir() else None
        if found is None:
            wanted = checkpoint or " or ".join(CHECKPOINT_NAMES)
            raise InputFileError(fold_folder, f"has no {wanted} (folds with a folder here: "
                                              f"{', '.join(available) or 'none'})")
        if found.name != CHECKPOINT_NAMES[0] and checkpoint is None:
            notes.append(f"{fold_folder.name}: no {CHECKPOINT_NAMES[0]}, using {found.name}")
        ckpt = read_checkpoint(found)
        paths.append(found)
        states.append(ckpt)
        axes = ckpt.get("inference_allowed_mirroring_axes")
        if mirror_axes is None and axes is not None:
            mirror_axes = tuple(int(a) for a in axes)
    name = _configuration_name(folder, states[0], configuration)
    plan = read_plan(plans, name, plans_path)
    for state, path in zip(states[1:], paths[1:]):
        other = _configuration_name(folder, state, configuration)
        if other != name:
            raise InputFileError(path, f"is a {other!r} checkpoint; the other folds are {name!r}")
    torch_device = torch.device(device)
    networks = []
    for state, path in zip(states, paths):
        network = build_network(plan, len(class_names), plans_path)
        _load_weights(network, state["network_weights"], path)
        networks.append(freeze(network.to(torch_device)))
    if mirror_axes is None:
        mirror_axes = tuple(range(len(plan.patch_size)))
    return NnUNetModel(folder, plan, class_names, networks, tuple(chosen), tuple(paths), mirror_axes, torch_device,
                       notes)
