"""Tiny nnU-Net v2 trained-model folders and MONAI bundles, written by the tests themselves.

The layouts are the real ones: ``dataset.json``, ``plans.json`` (nnU-Net 2.4+
keys, an ``architecture`` per configuration, a cascade that inherits) and
``fold_K/checkpoint_final.pth`` with the keys nnU-Net's trainer saves (numpy
scalars in its log, a ``torch.device`` in ``init_args``); a MONAI bundle with
``configs/inference.json``, ``configs/metadata.json`` and ``models/model.pt``.
The networks are small and their weights random (seeded), with the last
layer scaled so the logits differ clearly between classes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

CLASS_NAMES = ("background", "liver", "spleen")
INTENSITY = {"max": 300.0, "mean": 60.0, "median": 55.0, "min": -200.0, "percentile_00_5": -150.0,
             "percentile_99_5": 250.0, "std": 70.0}
_RESAMPLING = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
}


def _architecture(dims: int) -> dict:
    kernel = [3] * dims
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3,
            "features_per_stage": [4, 8, 8],
            "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
            "kernel_sizes": [kernel] * 3,
            "strides": [[1] * dims, [2] * dims, [2] * dims],
            "n_conv_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def nnunet_plans(scheme: str = "CTNormalization", spacing_2d=(1.5, 1.5), spacing_3d=(3.0, 1.5, 1.5),
                 patch_2d=(32, 32), patch_3d=(16, 32, 32)) -> dict:
    """A ``plans.json`` with 2d, 3d_fullres, 3d_lowres and 3d_cascade_fullres, nnU-Net's key layout."""
    common = {"preprocessor_name": "DefaultPreprocessor", "normalization_schemes": [scheme],
              "use_mask_for_norm": [False], "batch_dice": True, **copy.deepcopy(_RESAMPLING)}
    return {
        "dataset_name": "Dataset999_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 1.5, 1.5],
        "original_median_shape_after_transp": [20, 48, 48],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "2d": {"data_identifier": "nnUNetPlans_2d", "batch_size": 4, "patch_size": list(patch_2d),
                   "median_image_size_in_voxels": [48, 48], "spacing": list(spacing_2d),
                   "architecture": _architecture(2), **common},
            "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "batch_size": 2,
                           "patch_size": list(patch_3d), "median_image_size_in_voxels": [20, 48, 48],
                           "spacing": list(spacing_3d), "architecture": _architecture(3), **common},
            "3d_lowres": {"inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres",
                          "spacing": [s * 2 for s in spacing_3d], "next_stage": "3d_cascade_fullres"},
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    }


def nnunet_dataset(class_names=CLASS_NAMES, channels=("CT",)) -> dict:
    return {"channel_names": {str(i): c for i, c in enumerate(channels)},
            "labels": {name: i for i, name in enumerate(class_names)}, "numTraining": 1, "file_ending": ".nii.gz"}


def tiny_network(plans: dict, configuration: str, n_classes: int, seed: int = 0, input_channels: int = 1):
    """The plans' network built with nnU-Net's own recipe (pydoc.locate of the plans' names), seeded weights."""
    import pydoc

    arch = plans["configurations"][configuration]["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    torch.manual_seed(seed)
    network = pydoc.locate(arch["network_class_name"])(input_channels=input_channels, num_classes=n_classes,
                                                       deep_supervision=False, **kwargs)
    with torch.no_grad():
        for layer in network.decoder.seg_layers:
            layer.weight.mul_(8.0)
    return network.eval()


def write_nnunet_folder(root: Path, configuration: str = "3d_fullres", *, folds=(0,), plans: dict | None = None,
                        dataset: dict | None = None, seed: int = 0, checkpoint_name: str = "checkpoint_final.pth",
                        weights: dict | None = None) -> Path:
    """Write ``root/Dataset999_Tiny/nnUNetTrainer__nnUNetPlans__<configuration>``; return that folder."""
    plans = plans or nnunet_plans()
    dataset = dataset or nnunet_dataset()
    folder = Path(root) / "Dataset999_Tiny" / f"nnUNetTrainer__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    n_classes = len(dataset["labels"])
    dims = len(plans["configurations"]["3d_fullres" if "cascade" in configuration else configuration]
               .get("patch_size", [0, 0, 0]))
    for k, fold in enumerate(folds):
        if weights is None:
            network = tiny_network(plans, configuration, n_classes, seed + k)
            state = network.state_dict()
        else:
            state = weights
        checkpoint = {
            "network_weights": state,
            "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.99, "nesterov": True}]},
            "grad_scaler_state": None,
            "logging": {"mean_fg_dice": [np.float64(0.5), np.float64(0.6)], "ema_fg_dice": [np.float32(0.55)],
                        "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.7)]],
                        "train_losses": [0.9, 0.8], "epoch_start_timestamps": [1.0, 2.0]},
            "_best_ema": np.float64(0.6),
            "current_epoch": 2,
            "init_args": {"plans": plans, "configuration": configuration, "fold": fold, "dataset_json": dataset,
                          "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": tuple(range(dims)),
        }
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, folder / f"fold_{fold}" / checkpoint_name)
    return folder


def synthetic_ct(shape=(20, 40, 44), seed: int = 0) -> np.ndarray:
    """A smooth HU volume with bright and dark blobs, air (-1000) at the border: (z, y, x) float32."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    hu = -1000.0 + 1040.0 * ((y / 0.9) ** 2 + (x / 0.9) ** 2 < 1)
    for _ in range(6):
        c = rng.uniform(-0.6, 0.6, 3)
        r = rng.uniform(0.15, 0.35)
        hu += rng.uniform(-150, 250) * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / r ** 2)
    return (hu + rng.normal(0, 5, shape)).astype(np.float32)


def bundle_config(spatial_dims: int = 3, roi=(16, 32, 32), pixdim=(2.0, 1.5, 1.5), transforms=None,
                  overlap: float = 0.5, mode: str = "gaussian", n_classes: int = 3) -> dict:
    """A MONAI ``configs/inference.json`` in the layout of the model zoo's CT bundles."""
    if transforms is None:
        transforms = [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": list(pixdim), "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -175, "a_max": 250, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"},
        ]
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "UNet", "spatial_dims": spatial_dims, "in_channels": 1,
                        "out_channels": n_classes, "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                        "norm": "instance"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(roi), "sw_batch_size": 2,
                    "overlap": overlap, "mode": mode},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }


def write_monai_bundle(root: Path, *, config: dict | None = None, class_names=CLASS_NAMES, seed: int = 0,
                       weights: dict | None = None, name: str = "tiny_ct_segmentation") -> Path:
    """Write ``root/<name>`` with configs/inference.json, configs/metadata.json and models/model.pt."""
    from monai.bundle import ConfigParser

    config = config or bundle_config(n_classes=len(class_names))
    folder = Path(root) / name
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    metadata = {"version": "0.1.0", "monai_version": "1.6.1", "task": "tiny CT segmentation",
                "network_data_format": {
                    "inputs": {"image": {"type": "image", "format": "hounsfield", "num_channels": 1}},
                    "outputs": {"pred": {"type": "image", "format": "segmentation",
                                         "num_channels": len(class_names),
                                         "channel_def": {str(i): n for i, n in enumerate(class_names)}}}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if weights is None:
        parser = ConfigParser(config)
        torch.manual_seed(seed)
        network = parser.get_parsed_content("network_def")
        with torch.no_grad():
            last = [p for p in network.parameters() if p.ndim >= 3][-1]
            last.mul_(4.0)
        weights = network.state_dict()
    torch.save(weights, folder / "models" / "model.pt")
    return folder


def bundle_network(folder: Path):
    """``(parser, network)``: a bundle's config read by MONAI's own ``ConfigParser`` and its network, weights
    loaded, in eval mode (the bundle's own way, without the project's reader)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    return parser, network.eval()


def monai_reference(folder: Path, nifti: Path) -> np.ndarray:
    """The bundle's own prediction of a NIfTI file: its preprocessing, inferer and postprocessing (no gradients)."""
    parser, network = bundle_network(folder)
    preprocessing = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer")
    postprocessing = parser.get_parsed_content("postprocessing")
    data = preprocessing({"image": str(nifti)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    out = postprocessing(data)["pred"]
    return np.asarray(out)[0].astype(np.int64)


def check_slab_equals_volume(folder: Path, target, hu: np.ndarray, volume, channel: int = 1) -> None:
    """A slab target on the whole volume as one slab: the argmax of ``load_volume_target``, gradients to its input."""
    from napari_advseg.data.intensity import scale_for
    from napari_advseg.models.folder_targets import load_volume_target

    x = torch.tensor(scale_for(hu, target.normalisation).apply(hu))[:, None].requires_grad_(True)
    logits = target(x)
    with torch.no_grad():
        reference = load_volume_target(folder, "cpu")(torch.tensor(hu), volume).argmax(0).numpy()
    assert logits.shape == (hu.shape[0], len(target.class_names), *hu.shape[1:])
    assert len(np.unique(reference)) >= 2  # more than one class predicted: the check is not trivial
    assert np.array_equal(logits.argmax(1).numpy(), reference)
    logits[:, channel].sum().backward()
    assert float(x.grad.abs().sum()) > 0
