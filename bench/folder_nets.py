"""Networks trained on the real CT and saved the way their frameworks save them: nnU-Net folders and a MONAI bundle.

    .venv/bin/python bench/folder_nets.py                    # every network not yet trained
    .venv/bin/python bench/folder_nets.py --nets nnunet_3d --steps 400

Used by the folder-target benchmark (``bench/folder_attack.py``). Data: the
real CT as ``bench/attack_benchmark.py`` prepares it (the 46 organ slices,
3 mm isotropic, padded to 128 x 128); the networks learn from the slices
``z % 3 != 2`` and are scored on the 15 held-out ones, as every other
benchmark here.

Networks (``NETS``), written under ``runs/bench/folders/<name>``:

``nnunet_2d``
    An nnU-Net v2 trained-model folder, configuration ``2d``: plans written
    here (``PlainConvUNet``, 5 stages 32-256 features, instance norm; CT
    scheme with the training foreground's 0.5/99.5 percentiles, mean and std;
    spacing 3 x 3 mm; patch 128 x 128), weights trained by this script on
    96 x 96 patches with nnU-Net's Dice + CE loss (Adam, linear decay; the
    CPU cannot give nnU-Net's 1000 epochs of SGD).
``nnunet_3d``
    Configuration ``3d_fullres`` of the same kind: ``PlainConvUNet`` 3D,
    5 stages 16-160 features, patch 16 x 96 x 96 at 3 mm; trained on random
    16 x 96 x 96 patches of the volume with the held-out slices' voxels left
    out of the loss (they stay in the input, as the network's context).
``monai_2d``
    A MONAI bundle (``configs/inference.json``, ``configs/metadata.json``,
    ``models/model.pt``) of the 2D MONAI ``UNet`` that
    ``bench/foreign_nets.py`` trains for ``bench/foreign_targets.py``
    (window -175..250 HU to [0, 1]; ``SlidingWindowInferer`` 96 x 96, overlap
    0.25, Gaussian), its weights read back from that TorchScript export.

The folders' file layouts are those of ``tests/folder_helpers.py`` (nnU-Net's
``plans.json`` and ``checkpoint_final.pth`` keys; a bundle's configs). Each
folder gets ``training.json`` (steps, seconds, held-out Dice by the network
itself).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import folder_helpers  # noqa: E402  (the tests' fixture writers)
import foreign_nets  # noqa: E402  (the bench's own module)

NETS = ("nnunet_2d", "nnunet_3d", "monai_2d")
CLASS_NAMES = foreign_nets.CLASS_NAMES
IGNORE = 255
"""Label of the held-out slices' voxels in 3D training patches: left out of the loss."""


def say(text: str) -> None:
    print(text, flush=True)


def folder_of(work: Path, name: str) -> Path:
    """Where a trained network's folder lies (nnU-Net folders sit in a dataset folder, as nnU-Net writes them)."""
    if name == "monai_2d":
        return work / "folders" / name / "abdomen_ct_monai_unet"
    configuration = "2d" if name == "nnunet_2d" else "3d_fullres"
    return work / "folders" / name / "Dataset999_Tiny" / f"nnUNetTrainer__nnUNetPlans__{configuration}"


def _architecture(dims: int, features: tuple[int, ...], strides: list[list[int]]) -> dict:
    kind = f"{dims}d"
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": len(features), "features_per_stage": list(features),
            "conv_op": f"torch.nn.modules.conv.Conv{kind}", "kernel_sizes": [[3] * dims] * len(features),
            "strides": strides, "n_conv_per_stage": [2] * len(features),
            "n_conv_per_stage_decoder": [2] * (len(features) - 1), "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{kind}",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_for(hu_train: np.ndarray, y_train: np.ndarray, shape: tuple[int, int, int]) -> dict:
    """nnU-Net plans for the real CT: 2d and 3d_fullres, the CT scheme fitted on the training foreground."""
    fg = hu_train[y_train > 0].astype(np.float64)
    intensity = {"max": float(fg.max()), "mean": float(np.clip(fg, *np.percentile(fg, [0.5, 99.5])).mean()),
                 "median": float(np.median(fg)), "min": float(fg.min()),
                 "percentile_00_5": float(np.percentile(fg, 0.5)),
                 "percentile_99_5": float(np.percentile(fg, 99.5)),
                 "std": float(np.clip(fg, *np.percentile(fg, [0.5, 99.5])).std())}
    plans = folder_helpers.nnunet_plans(spacing_2d=(3.0, 3.0), spacing_3d=(3.0, 3.0, 3.0), patch_2d=(128, 128),
                                        patch_3d=(16, 96, 96))
    plans["original_median_spacing_after_transp"] = [3.0, 3.0, 3.0]
    plans["original_median_shape_after_transp"] = list(shape)
    plans["foreground_intensity_properties_per_channel"]["0"] = intensity
    configs = plans["configurations"]
    configs["2d"]["architecture"] = _architecture(2, (32, 64, 128, 256, 256), [[1, 1]] + [[2, 2]] * 4)
    configs["2d"]["median_image_size_in_voxels"] = list(shape[1:])
    configs["3d_fullres"]["architecture"] = _architecture(
        3, (16, 32, 64, 128, 160), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]])
    configs["3d_fullres"]["median_image_size_in_voxels"] = list(shape)
    return plans


def _network(plans: dict, configuration: str):
    """The plans' network, built by the product's nnU-Net reader (nnU-Net's own recipe), fresh weights."""
    from napari_advseg.models.nnunet_folder import build_network, read_plan

    torch.manual_seed(0)
    return build_network(read_plan(plans, configuration, Path("plans.json")), len(CLASS_NAMES),
                         Path("plans.json")).train()


def _ct_input(hu: np.ndarray, plans: dict) -> np.ndarray:
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    spec = {"mode": "ct", "clip": [props["percentile_00_5"], props["percentile_99_5"]], "mean": props["mean"],
            "std": props["std"]}
    return foreign_nets.normalise(hu, spec).astype(np.float32)


def _masked_dice_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """nnU-Net's Dice + CE over the voxels whose label is not :data:`IGNORE`."""
    keep = labels != IGNORE
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    ce = F.cross_entropy(logits, safe, reduction="none")[keep].mean()
    probs = logits.softmax(1) * keep[:, None]
    onehot = F.one_hot(safe, logits.shape[1]).movedim(-1, 1).float() * keep[:, None]
    dims = (0, *range(2, logits.ndim))
    dice = (2 * (probs * onehot).sum(dims) + 1e-5) / (probs.sum(dims) + onehot.sum(dims) + 1e-5)
    return ce - dice[1:].mean()


def _patches_3d(x: np.ndarray, y: np.ndarray, patch: tuple[int, int, int], batch: int, rng: np.random.Generator):
    while True:
        xs, ys = [], []
        for _ in range(batch):
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(x.shape, patch)]
            box = tuple(slice(s, s + p) for s, p in zip(start, patch))
            xs.append(x[box])
            ys.append(y[box])
        yield torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys)).long()


def _adam(net):
    return torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)


def _dice(pred: np.ndarray, ref: np.ndarray) -> dict:
    out = {}
    for k, organ in enumerate(CLASS_NAMES[1:], start=1):
        a, b = pred == k, ref == k
        out[organ] = None if b.sum() == 0 else 100.0 * 2 * (a & b).sum() / (a.sum() + b.sum())
    return out


def train_nnunet(name: str, hu: np.ndarray, labels: np.ndarray, steps: int, work: Path) -> dict:
    """Train one nnU-Net configuration on the real CT and write its trained-model folder."""
    from napari_advseg.data.slices import split_slices

    train_z, test_z = split_slices(len(hu), "train"), split_slices(len(hu), "test")
    # nnU-Net sees the image in SimpleITK's order: the canonical volume with its in-plane axes flipped
    hu_n, labels_n = np.ascontiguousarray(hu[:, ::-1, ::-1]), np.ascontiguousarray(labels[:, ::-1, ::-1])
    plans = plans_for(hu_n[train_z], labels_n[train_z], hu.shape)
    x = _ct_input(hu_n, plans)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    configuration = "2d" if name == "nnunet_2d" else "3d_fullres"
    net = _network(plans, configuration)
    if configuration == "2d":
        batches = foreign_nets._batches(x[train_z], labels_n[train_z].astype(np.int64), 8, 96, rng)
        seconds = foreign_nets.fit(net, _adam(net), batches, foreign_nets._soft_dice_ce, steps, name, say)
    else:
        y = labels_n.astype(np.int64)
        y[test_z] = IGNORE
        seconds = foreign_nets.fit(net, _adam(net), _patches_3d(x, y, (16, 96, 96), 2, rng), _masked_dice_ce,
                                  steps, name, say)
    net.eval()
    folder = folder_of(work, name)
    folder_helpers.write_nnunet_folder(folder.parents[1], configuration, plans=plans,
                                       dataset=folder_helpers.nnunet_dataset(CLASS_NAMES),
                                       weights=net.state_dict())
    from napari_advseg.models.nnunet_folder import read_nnunet_folder

    with torch.no_grad():
        logits = read_nnunet_folder(folder).logits(torch.from_numpy(hu_n), (3.0, 3.0, 3.0))
    pred = logits.argmax(0).numpy()
    record = {"name": name, "configuration": configuration, "steps": steps, "train_seconds": seconds,
              "held_out_dice": _dice(pred[test_z], labels_n[test_z]),
              "parameters": sum(p.numel() for p in net.parameters()), "folder": str(folder)}
    (folder / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def write_monai_2d(work: Path) -> dict:
    """The bench's trained 2D MONAI UNet written as a MONAI bundle (weights from its TorchScript export)."""
    source = work / "foreign" / "monai_unet" / "model.pt"
    if not source.is_file():
        raise SystemExit(f"{source} is missing: run bench/foreign_targets.py --stages targets --targets monai_unet")
    weights = {k: v.clone() for k, v in torch.jit.load(str(source), map_location="cpu").state_dict().items()}
    network = {"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": len(CLASS_NAMES),
               "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 2}
    transforms = [{"_target_": "LoadImaged", "keys": "image"},
                  {"_target_": "EnsureChannelFirstd", "keys": "image"},
                  {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -175, "a_max": 250,
                   "b_min": 0.0, "b_max": 1.0, "clip": True},
                  {"_target_": "EnsureTyped", "keys": "image"}]
    config = folder_helpers.bundle_config(spatial_dims=2, roi=(96, 96), transforms=transforms, overlap=0.25,
                                          n_classes=len(CLASS_NAMES))
    config["network_def"] = network
    folder = folder_of(work, "monai_2d")
    folder_helpers.write_monai_bundle(folder.parent, config=config, class_names=CLASS_NAMES, weights=weights,
                                      name=folder.name)
    record = {"name": "monai_2d", "source": str(source),
              "training": json.loads((source.parent / "training.json").read_text()), "folder": str(folder)}
    (folder / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    p.add_argument("--steps", type=int, default=600, help="training steps of the nnU-Net networks")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    from attack_benchmark import prepare_real

    from napari_advseg.io.nifti import load_ct, load_labels

    ct, lab = prepare_real(args.work / "real")
    volume = load_ct(ct)
    labels = load_labels(lab, volume)
    for name in args.nets:
        done = folder_of(args.work, name) / "training.json"
        if done.is_file() and not args.force:
            say(f"{name}: {done} exists")
            continue
        record = write_monai_2d(args.work) if name == "monai_2d" else train_nnunet(
            name, volume.hu.astype(np.float32), labels, args.steps, args.work)
        dice = record.get("held_out_dice") or record["training"]["held_out_dice"]
        say(f"{name}: held-out Dice " + ", ".join(f"{k} {v:.1f}" if v is not None and not math.isnan(v) else f"{k} -"
                                                  for k, v in dice.items()) + f"; {record['folder']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
