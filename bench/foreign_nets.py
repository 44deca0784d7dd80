"""Segmentation networks built and trained with other people's libraries, exported as TorchScript targets.

Used by ``bench/foreign_targets.py``. Each network is trained the way its
library's users train it, on the real CT's training slices, with the input
normalisation its library's users use, and written as ``model.pt``
(TorchScript, traced at the slice size) with a sidecar ``model.json`` that
declares its classes, normalisation and stride: the target contract of
``docs/inputs.md``, met from files alone.

Networks (``NETS``):

``monai_unet``
    MONAI ``UNet`` (2D, channels 16-128, strides 2, two residual units),
    ``DiceCELoss`` (Dice over the batch), Adam 1e-3 decayed linearly; input HU window -175..250 mapped to [0, 1]
    (MONAI's ``ScaleIntensityRanged`` as in its abdominal CT tutorials).
``monai_segresnet``
    MONAI ``SegResNet`` (2D, 16 initial filters), same loss, optimiser and window.

Every network: random 96 x 96 patches of the training slices, batch 8, no
flips (left and right organs are told apart by side). The sidecars declare
no ``sliding_window``, so the targets run on whole slices, outside the patch
pipeline they learnt in (docs/results.md, "Run outside their pipeline"); the
bundle ``monai_2d`` of ``bench/folder_nets.py`` is the MONAI ``UNet`` run
through its window.
``nnunet_plain``
    ``PlainConvUNet`` of dynamic-network-architectures (nnU-Net's default
    network: 5 stages 32-256 features, instance norm, LeakyReLU), deep
    supervision off at export; nnU-Net's Dice + CE loss; Adam 1e-3 decayed
    linearly (nnU-Net's SGD with momentum 0.99 needs far more steps than a
    CPU bench can give: 600 of them left kidney_left at 2 % Dice); input:
    nnU-Net's CT scheme, HU clipped to the 0.5 and 99.5 percentiles of the
    training foreground, then the foreground's mean and std.

The libraries are optional and only the bench needs them; install them with
torch pinned (see ``bench/README.md``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CLASS_NAMES = ["background", "liver", "spleen", "kidney_left", "kidney_right", "pancreas"]
MONAI_WINDOW = {"mode": "window", "window": [-175.0, 250.0], "range": [0.0, 1.0]}


def nnunet_ct_scheme(hu: np.ndarray, labels: np.ndarray) -> dict:
    """nnU-Net's CT normalisation fitted on the training foreground: clip at 0.5/99.5 percentiles, then z-score."""
    fg = hu[labels > 0].astype(np.float64)
    low, high = np.percentile(fg, [0.5, 99.5])
    clipped = np.clip(fg, low, high)
    return {"mode": "ct", "clip": [float(low), float(high)], "mean": float(clipped.mean()),
            "std": float(clipped.std())}


def normalise(hu: np.ndarray, spec: dict) -> np.ndarray:
    """HU -> network input for the specs used here (the library's own recipe, written out)."""
    if spec["mode"] == "window":
        lo, hi = spec["window"]
        a, b = spec["range"]
        return (np.clip(hu, lo, hi) - lo) / (hi - lo) * (b - a) + a
    if spec["mode"] == "ct":
        lo, hi = spec["clip"]
        return (np.clip(hu, lo, hi) - spec["mean"]) / spec["std"]
    raise ValueError(spec["mode"])


def build(name: str, classes: int) -> tuple[torch.nn.Module, int]:
    """(network, stride) of a named foreign architecture."""
    if name == "monai_unet":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=2, in_channels=1, out_channels=classes, channels=(16, 32, 64, 128),
                    strides=(2, 2, 2), num_res_units=2), 8
    if name == "monai_segresnet":
        from monai.networks.nets import SegResNet

        return SegResNet(spatial_dims=2, init_filters=16, in_channels=1, out_channels=classes), 8
    if name == "nnunet_plain":
        from dynamic_network_architectures.architectures.unet import PlainConvUNet

        net = PlainConvUNet(input_channels=1, n_stages=5, features_per_stage=(32, 64, 128, 256, 256),
                            conv_op=torch.nn.Conv2d, kernel_sizes=3, strides=(1, 2, 2, 2, 2),
                            n_conv_per_stage=2, num_classes=classes, n_conv_per_stage_decoder=2, conv_bias=True,
                            norm_op=torch.nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                            nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False)
        return net, 16
    raise ValueError(f"unknown network {name!r}")


NETS = ("monai_unet", "monai_segresnet", "nnunet_plain")


def _soft_dice_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """nnU-Net's training loss: cross-entropy plus batch soft Dice over the foreground classes."""
    ce = F.cross_entropy(logits, labels)
    probs = logits.softmax(1)
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce - dice[1:].mean()


def _batches(x: np.ndarray, y: np.ndarray, batch: int, patch: int, rng: np.random.Generator):
    """Random patches of random training slices (no flips: left and right organs are told apart by side)."""
    n, h, w = x.shape
    while True:
        idx = rng.integers(0, n, batch)
        top = rng.integers(0, h - patch + 1, batch)
        left = rng.integers(0, w - patch + 1, batch)
        xb = np.stack([x[i, t:t + patch, l:l + patch] for i, t, l in zip(idx, top, left)])
        yb = np.stack([y[i, t:t + patch, l:l + patch] for i, t, l in zip(idx, top, left)])
        yield (torch.from_numpy(np.ascontiguousarray(xb))[:, None].float(),
               torch.from_numpy(np.ascontiguousarray(yb)).long())


def fit(net, opt, batches, loss_fn, steps: int, name: str, log=print) -> float:
    """``steps`` optimiser steps on ``batches`` with the learning rate decayed linearly to 0; the seconds taken."""
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (1 - step / steps)
        xb, yb = next(batches)
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"  {name} step {step + 1}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    return time.perf_counter() - start


def train_net(name: str, hu_train: np.ndarray, y_train: np.ndarray, hu_test: np.ndarray, y_test: np.ndarray,
              out_dir: Path, steps: int, seed: int = 0, batch: int = 8, patch: int = 96, log=print) -> dict:
    """Train one foreign network, export it as a TorchScript target with its sidecar; return its record."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = nnunet_ct_scheme(hu_train, y_train) if name == "nnunet_plain" else dict(MONAI_WINDOW)
    x_train = normalise(hu_train, spec).astype(np.float32)
    x_test = normalise(hu_test, spec).astype(np.float32)
    net, stride = build(name, len(CLASS_NAMES))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    if name == "nnunet_plain":
        loss_fn = _soft_dice_ce
    else:
        from monai.losses import DiceCELoss

        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)  # Dice over the batch: patches lack organs

        def loss_fn(logits, labels):
            return dice_ce(logits, labels[:, None])
    net.train()
    seconds = fit(net, opt, _batches(x_train, y_train, batch, patch, rng), loss_fn, steps, name, log)
    net.eval()
    dice = held_out_dice(net, x_test, y_test)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(x_test[:1, None])
    with torch.no_grad():
        traced = torch.jit.trace(net, example, check_trace=False)
    model_path = out_dir / "model.pt"
    traced.save(str(model_path))
    sidecar = {"class_names": CLASS_NAMES, "normalisation": spec, "input_multiple": stride}
    (out_dir / "model.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    record = {"name": name, "steps": steps, "train_seconds": seconds, "held_out_dice": dice,
              "normalisation": spec, "parameters": sum(p.numel() for p in net.parameters()),
              "model": str(model_path)}
    (out_dir / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


@torch.no_grad()
def held_out_dice(net, x: np.ndarray, y: np.ndarray) -> dict:
    """Dice per organ over all held-out slices together (%), by the library network itself."""
    pred = torch.cat([net(torch.from_numpy(x[i:i + 8, None])).argmax(1) for i in range(0, len(x), 8)]).numpy()
    out = {}
    for k, organ in enumerate(CLASS_NAMES[1:], start=1):
        a, b = pred == k, y == k
        denom = a.sum() + b.sum()
        out[organ] = None if b.sum() == 0 else (100.0 * 2 * (a & b).sum() / denom if denom else math.nan)
    return out
