"""nnU-Net v2 trained-model folders: reading, bad folders, and prediction equal to nnUNetPredictor's."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from folder_helpers import (CLASS_NAMES, check_slab_equals_volume, nnunet_dataset, nnunet_plans, synthetic_ct,
                            tiny_network, write_nnunet_folder)
from napari_advseg.errors import AdvsegError, InputFileError

pytest.importorskip("dynamic_network_architectures")

from napari_advseg.models.folder_targets import load_volume_target  # noqa: E402
from napari_advseg.models.nnunet_folder import read_nnunet_folder  # noqa: E402
from napari_advseg.models.target_load import load_target  # noqa: E402

SPACING = (2.5, 1.2, 1.1)


def dice(a: np.ndarray, b: np.ndarray, c: int) -> float:
    both = (a == c).sum() + (b == c).sum()
    return 1.0 if both == 0 else 2 * ((a == c) & (b == c)).sum() / both


def nnunet_predictor(folder, configuration, mirror=False, folds=(0,)):
    """An ``nnUNetPredictor`` of the folder's networks, built by nnU-Net's own code.

    The predictor is set up with ``manual_initialization`` (the network from
    ``get_network_from_plans``), which keeps nnU-Net's trainer lookup, and the
    timm/torchvision it imports, out of the path.
    """
    predict = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    checkpoints = [torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", weights_only=False) for f in folds]
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 1, len(dataset["labels"]),
                                     allow_init=False, deep_supervision=False)
    predictor = predict.nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                                        perform_everything_on_device=False, device=torch.device("cpu"),
                                        verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, manager, config, [c["network_weights"] for c in checkpoints], dataset,
                                    "nnUNetTrainer", checkpoints[0]["inference_allowed_mirroring_axes"])
    return predictor


def nnunet_reference(folder, configuration, image, spacing, mirror=False, folds=(0,)):
    """``nnUNetPredictor``'s segmentation of ``image`` (Z, Y, X) with the given voxel spacing."""
    predictor = nnunet_predictor(folder, configuration, mirror, folds)
    return predictor.predict_single_npy_array(image[None], {"spacing": list(spacing)})


@pytest.mark.parametrize("configuration,mirror,folds", [("2d", True, (0,)), ("3d_fullres", False, (0, 1))])
def test_prediction_equals_nnunet_predictor(tmp_path, configuration, mirror, folds):
    folder = write_nnunet_folder(tmp_path, configuration, folds=folds)
    image = synthetic_ct()
    reference = nnunet_reference(folder, configuration, image, SPACING, mirror, folds)
    model = read_nnunet_folder(folder, folds=folds)
    hu = torch.tensor(image, requires_grad=True)
    logits = model.logits(hu, SPACING, mirror=mirror)
    ours = logits.argmax(0).numpy()
    assert ours.shape == reference.shape
    assert len(np.unique(reference)) >= 2  # more than one class predicted: the check is not trivial
    for c in range(3):
        assert dice(ours, reference, c) >= 0.999, (c, dice(ours, reference, c))
    logits[1].sum().backward()
    assert float(hu.grad.abs().sum()) > 0


def test_folder_reads_names_plan_and_checkpoint_keys(tmp_path):
    folder = write_nnunet_folder(tmp_path, "3d_fullres", folds=(0, 1))
    model = read_nnunet_folder(folder)
    assert model.class_names == CLASS_NAMES
    assert model.folds == ("0",) and any("--fold 0,1" in n for n in model.notes)
    assert model.plan.normalisation() == {"mode": "ct", "clip": [-150.0, 250.0], "mean": 60.0, "std": 70.0}
    assert model.mirror_axes == (0, 1, 2) and not model.plan.is_2d
    assert all(not p.requires_grad for n in model.networks for p in n.parameters())


def test_2d_folder_is_a_target_with_its_own_normalisation(tmp_path):
    folder = write_nnunet_folder(tmp_path, "2d")
    target = load_target(folder, "cpu")
    assert target.kind == "nnunet" and target.class_names == CLASS_NAMES
    assert target.normalisation["mode"] == "ct" and target.normalisation["clip"] == [-150.0, 250.0]
    target.model.set_spacing((3.0, 0.9, 0.9))
    x = torch.randn(2, 1, 50, 47, requires_grad=True)
    out = target(x)
    assert out.shape == (2, 3, 50, 47)
    out[:, 1].sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_2d_target_equals_the_volume_prediction_on_anisotropic_slices(tmp_path):
    """The 2D target on normalised slices gives nnU-Net's 2d prediction of the volume (flipped to canonical)."""
    folder = write_nnunet_folder(tmp_path, "2d")
    from napari_advseg.data.intensity import scale_for
    from napari_advseg.io.geometry import volume_from_array

    hu = synthetic_ct()
    volume = volume_from_array(hu, (5.0, 1.2, 1.1))
    target = load_target(folder, "cpu")
    target.model.set_spacing(volume.spacing)
    slices = torch.tensor(scale_for(hu, target.normalisation).apply(hu))[:, None]
    with torch.no_grad():
        from_slices = target(slices).argmax(1).numpy()
        from_volume = load_volume_target(folder, "cpu")(torch.tensor(hu), volume).argmax(0).numpy()
    for c in range(3):
        assert dice(from_slices, from_volume, c) >= 0.999


def test_3d_folder_is_a_slab_target_equal_to_the_volume_prediction(tmp_path):
    """A 3d_fullres folder is a slab target; on the whole volume as one slab its argmax is nnU-Net's."""
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.models.folder_targets import fit_target_to_volume

    folder = write_nnunet_folder(tmp_path, "3d_fullres")
    hu = synthetic_ct()
    volume = volume_from_array(hu, SPACING)
    target = load_target(folder, "cpu")
    assert target.volumetric and target.slab_depth == 16  # the plans' patch depth at their own 3 mm
    fit_target_to_volume(target, volume)
    assert target.slab_depth == round(16 * 3.0 / SPACING[0])
    check_slab_equals_volume(folder, target, hu, volume)
    plans = nnunet_plans()
    plans["transpose_forward"], plans["transpose_backward"] = [1, 0, 2], [1, 0, 2]
    folder = write_nnunet_folder(tmp_path / "t", "3d_fullres", plans=plans)
    assert "transpose_forward [1, 0, 2]" in _message(lambda: load_target(folder, "cpu"))


def _message(call) -> str:
    with pytest.raises(AdvsegError) as info:
        call()
    return str(info.value)


def test_bad_folders_name_the_file(tmp_path):
    folder = write_nnunet_folder(tmp_path / "a", "3d_fullres")
    (folder / "plans.json").unlink()
    assert "plans.json: is missing" in _message(lambda: read_nnunet_folder(folder))

    folder = write_nnunet_folder(tmp_path / "b", "3d_fullres")
    (folder / "fold_0" / "checkpoint_final.pth").unlink()
    assert "no checkpoint (fold_K/checkpoint_final.pth, fold_K/checkpoint_best.pth)" in _message(
        lambda: read_nnunet_folder(folder))
    assert "fold_3: has no checkpoint_final.pth or checkpoint_best.pth" in _message(
        lambda: read_nnunet_folder(folder, folds=[3]))

    folder = write_nnunet_folder(tmp_path / "c", "3d_fullres")
    message = _message(lambda: read_nnunet_folder(folder, configuration="3d_midres"))
    assert "plans.json" in message and "no configuration '3d_midres'" in message

    assert "cascade" in _message(lambda: read_nnunet_folder(folder, configuration="3d_cascade_fullres"))

    plans = nnunet_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = \
        "dynamic_network_architectures.architectures.unet.NoSuchUNet"
    folder = write_nnunet_folder(tmp_path / "d", "3d_fullres", plans=plans,
                                 weights=tiny_network(nnunet_plans(), "3d_fullres", 3).state_dict())
    assert "unknown architecture class" in _message(lambda: read_nnunet_folder(folder))

    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    folder = write_nnunet_folder(tmp_path / "e", "3d_fullres", plans=plans,
                                 weights=tiny_network(nnunet_plans(), "3d_fullres", 3).state_dict())
    assert "only classes of dynamic_network_architectures.architectures are built" in _message(
        lambda: read_nnunet_folder(folder))

    folder = write_nnunet_folder(tmp_path / "f", "3d_fullres",
                                 weights=tiny_network(nnunet_plans(), "3d_fullres", 4).state_dict())
    message = _message(lambda: read_nnunet_folder(folder))
    assert "checkpoint_final.pth" in message and "weights do not fit" in message and "wrong shape" in message

    folder = write_nnunet_folder(tmp_path / "g", "3d_fullres", dataset=nnunet_dataset(channels=("CT", "PET")),
                                 weights=tiny_network(nnunet_plans(), "3d_fullres", 3).state_dict())
    message = _message(lambda: read_nnunet_folder(folder))
    assert "dataset.json" in message and "2 input channels (CT, PET); a CT gives one" in message


def test_checkpoint_with_code_is_refused(tmp_path):
    folder = write_nnunet_folder(tmp_path, "3d_fullres")
    import argparse
    import collections

    torch.save({"network_weights": collections.OrderedDict(), "x": argparse.Namespace(a=1)},
               folder / "fold_0" / "checkpoint_final.pth")
    assert "pickled Python objects" in _message(lambda: read_nnunet_folder(folder))


def test_missing_extra_names_it(tmp_path, monkeypatch):
    folder = write_nnunet_folder(tmp_path, "2d")
    monkeypatch.setitem(sys.modules, "dynamic_network_architectures", None)
    message = _message(lambda: load_target(folder, "cpu"))
    assert 'pip install "napari-advseg[nnunet]"' in message and "\n" not in message


def test_cli_fold_option_builds_an_ensemble(tmp_path):
    from napari_advseg.cli.arguments import target_overrides
    from napari_advseg.cli.parser import build_parser

    folder = write_nnunet_folder(tmp_path, "2d", folds=(0, 1))
    args = build_parser().parse_args(["evaluate", "--target", str(folder), "--fold", "0,1"])
    target = load_target(args.target, "cpu", **target_overrides(args))
    assert len(target.model.networks) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--target", str(folder), "--fold", "0,0"])
