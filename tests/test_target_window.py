"""A model file trained on patches declares a sliding window: its sidecar, advseg.json or --sliding-window."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from napari_advseg.cli import main
from napari_advseg.cli.arguments import sliding_window as parse_window
from napari_advseg.errors import InputFileError
from napari_advseg.models.sliding_window import WindowedNetwork, monai_starts, sliding_window, window_weights
from napari_advseg.models.target_files import TORCHSCRIPT_META_FILE
from napari_advseg.models.target_load import load_target
from napari_advseg.organs import ORGAN_CLASSES

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]

WINDOW = {"roi_size": [16, 16], "overlap": 0.25, "mode": "gaussian"}


class PatchNet(nn.Module):
    """Instance norm over whatever it is given: its logits depend on the window it sees, as a MONAI UNet's do."""

    def __init__(self, n_classes: int = len(ORGAN_CLASSES)):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.InstanceNorm2d(4)
        self.head = nn.Conv2d(4, n_classes, 1)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))))


def script_file(tmp_path, name: str = "net.pt", meta: dict | None = None):
    torch.manual_seed(0)
    path = tmp_path / name
    extra = {TORCHSCRIPT_META_FILE: json.dumps(meta)} if meta is not None else {}
    torch.jit.save(torch.jit.script(PatchNet().eval()), str(path), _extra_files=extra)
    return path


def test_gaussian_window_weights_by_hand():
    weights = window_weights((5, 4), "gaussian", 0.25)
    assert weights.shape == (5, 4)
    row = torch.exp(-(torch.arange(5.0) - 2.0) ** 2 / (2 * 1.25 ** 2))
    col = torch.exp(-(torch.arange(4.0) - 1.5) ** 2 / (2 * 1.0 ** 2))
    assert torch.allclose(weights, (row[:, None] * col[None, :]).clamp_min(1e-3))
    assert torch.equal(window_weights((3, 3)), torch.ones(3, 3))
    assert window_weights((64, 64), "gaussian", 0.01).min().item() == pytest.approx(1e-3)  # the floor


def test_window_weights_equal_monais_importance_map():
    utils = pytest.importorskip("monai.data.utils")
    for roi, scale in [((96, 96), 0.125), ((37, 20), 0.3)]:
        for mode in ("constant", "gaussian"):
            theirs = utils.compute_importance_map(roi, mode=mode, sigma_scale=scale)
            assert torch.equal(window_weights(roi, mode, scale), theirs.float())


def test_sidecar_window_runs_the_network_on_windows_only(tmp_path):
    path = script_file(tmp_path)
    (tmp_path / "net.json").write_text(json.dumps({"sliding_window": WINDOW}))
    target = load_target(path, "cpu")
    assert target.sliding_window == {**WINDOW, "sigma_scale": 0.125}
    assert isinstance(target.model, WindowedNetwork) and target.input_multiple == 1
    x = torch.randn(2, 1, 40, 29)
    network = torch.jit.load(str(path)).eval()
    with torch.no_grad():
        expected = sliding_window(x, network, (16, 16), lambda size, p: monai_starts(size, p, 0.25),
                                  window_weights((16, 16), "gaussian", 0.125))
        got = target(x)
        whole = network(x)
    assert got.shape == (2, len(ORGAN_CLASSES), 40, 29)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got - whole).abs().max() > 1e-2  # instance norm: the whole slice is another input
    small = torch.randn(1, 1, 9, 12)  # smaller than the window: padded to it and cropped back
    assert target(small).shape == (1, len(ORGAN_CLASSES), 9, 12)
    x.requires_grad_(True)
    target(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_window_equals_monais_sliding_window_inference(tmp_path):
    inferers = pytest.importorskip("monai.inferers")
    path = script_file(tmp_path, meta={"sliding_window": WINDOW})  # declared inside the archive
    target = load_target(path, "cpu")
    network = torch.jit.load(str(path)).eval()
    x = torch.randn(3, 1, 45, 38)
    with torch.no_grad():
        theirs = inferers.sliding_window_inference(x, (16, 16), 2, network, overlap=0.25, mode="gaussian")
        ours = target(x)
    assert torch.allclose(ours, torch.as_tensor(theirs), atol=1e-5)


def test_precedence_flag_then_sidecar_then_archive(tmp_path):
    path = script_file(tmp_path, meta={"sliding_window": {"roi_size": [8, 8]}})
    assert load_target(path, "cpu").sliding_window["roi_size"] == [8, 8]
    (tmp_path / "net.json").write_text(json.dumps({"sliding_window": {"roi_size": [12, 12]}}))
    assert load_target(path, "cpu").sliding_window["roi_size"] == [12, 12]
    target = load_target(path, "cpu", sliding_window=parse_window("16,16:0.5:gaussian"))
    assert target.sliding_window == {"roi_size": [16, 16], "overlap": 0.5, "mode": "gaussian", "sigma_scale": 0.125}


def test_no_window_declared_the_network_sees_whole_slices(tmp_path):
    target = load_target(script_file(tmp_path), "cpu")
    assert target.sliding_window is None and not isinstance(target.model, WindowedNetwork)


@pytest.mark.parametrize("window, expected", [
    ({"roi_size": [16]}, "roi_size must be two positive integers"),
    ({"roi_size": [16, 0]}, "roi_size must be two positive integers"),
    ({"roi_size": [16, 16], "overlap": 1.0}, "overlap must be a number in [0, 1)"),
    ({"roi_size": [16, 16], "mode": "linear"}, "mode must be one of constant, gaussian"),
    ({"roi_size": [16, 16], "sigma_scale": 0}, "sigma_scale must be a positive number"),
    ({"roi_size": [16, 16], "stride": 4}, "unknown keys ['stride']"),
    ([16, 16], "must be \"none\" or an object"),
])
def test_bad_window_names_the_sidecar_and_the_key(tmp_path, window, expected):
    path = script_file(tmp_path)
    (tmp_path / "net.json").write_text(json.dumps({"sliding_window": window}))
    with pytest.raises(InputFileError) as info:
        load_target(path, "cpu")
    assert expected in str(info.value) and str(tmp_path / "net.json") in str(info.value)


@pytest.mark.parametrize("text", ["16", "16,16:1.5", "16,16:0.25:linear", "a,b", "16,16:0.2:gaussian:x"])
def test_bad_window_flags(text):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_window(text)
    assert "expected H,W[:OVERLAP[:MODE]]" in str(info.value)


def test_a_window_the_network_cannot_take_names_the_failure(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Conv2d(1, 6, 9)).eval()), str(path))  # output 8 px smaller
    with pytest.raises(InputFileError) as info:
        load_target(path, "cpu", sliding_window={"roi_size": [16, 16]})
    assert str(path) in str(info.value) and "run by its sliding window of 16 x 16 pixels" in str(info.value)


def test_a_folder_refuses_a_window(tmp_path):
    with pytest.raises(InputFileError) as info:
        load_target(tmp_path, "cpu", sliding_window={"roi_size": [16, 16]})
    assert "a sliding window is declared for model files only" in str(info.value)


def test_cli_flag_reaches_the_target_and_the_report(tiny_files, tmp_path, capsys):
    path = script_file(tmp_path)
    report = tmp_path / "report.json"
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--device", "cpu", "--normalisation", "zscore",
                 "--class-names", ",".join(ORGAN_CLASSES), "--sliding-window", "16,16:0.25:gaussian",
                 "--json", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(report.read_text())["sliding_window"] == {**WINDOW, "sigma_scale": 0.125}
    assert "run by a 16 x 16 sliding window (gaussian, overlap 0.25)." in out


def test_export_keeps_the_window_beside_the_network(tmp_path):
    from napari_advseg.models.target_files import export_torchscript

    path = script_file(tmp_path, meta={"sliding_window": WINDOW})
    target = load_target(path, "cpu")
    again = load_target(export_torchscript(target, tmp_path / "again.pt"), "cpu")
    assert again.sliding_window == target.sliding_window
    x = torch.randn(1, 1, 30, 30)
    with torch.no_grad():
        assert torch.allclose(again(x), target(x), atol=1e-6)


def test_instance_norm_without_a_window_is_said_and_none_silences_it(tmp_path):
    path = script_file(tmp_path)
    notes = load_target(path, "cpu").notes
    assert any("normalises with instance or group norm" in note and "--sliding-window" in note for note in notes)
    (tmp_path / "net.json").write_text(json.dumps({"sliding_window": "none"}))
    target = load_target(path, "cpu")
    assert target.sliding_window is None and not any("instance norm" in note for note in target.notes)
    assert parse_window("none") == "none"
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(1, len(ORGAN_CLASSES), 3, padding=1).eval()), str(plain))
    assert not any("instance norm" in note for note in load_target(plain, "cpu").notes)
    grouped = tmp_path / "grouped.pt"  # group norm (MONAI's SegResNet) takes its statistics from each input too
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, len(ORGAN_CLASSES), 1))
    torch.jit.save(torch.jit.script(net.eval()), str(grouped))
    assert any("instance or group norm" in note for note in load_target(grouped, "cpu").notes)


def test_train_evaluate_and_sample_through_a_declared_window(tiny_files, tmp_path, capsys):
    """The attack runs through the window: a generator trains against it, records it, and samples a volume."""
    import nibabel as nib

    from napari_advseg.attack.checkpoint import load_checkpoint

    path = script_file(tmp_path, meta={"sliding_window": WINDOW, "normalisation": {"mode": "zscore"},
                                       "class_names": list(ORGAN_CLASSES)})
    data = ["--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]), "--target", str(path),
            "--device", "cpu"]
    code = main(["train", *data, "--steps", "2", "--batch-size", "2", "--critic-steps", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    _, err = capsys.readouterr()
    assert code == 0, err
    ckpt = tmp_path / "run" / "generator.pt"
    assert load_checkpoint(ckpt)["target"]["sliding_window"] == {**WINDOW, "sigma_scale": 0.125}
    code = main(["evaluate", *data, "--generator", str(ckpt), "--samples", "1", "--json", str(tmp_path / "r.json")])
    _, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sliding_window"]["roi_size"] == [16, 16] and all(
        row["dice_adv"] is not None for row in report["organs"].values() if row["dice_clean"] is not None)
    assert "sliding window" not in err  # the generator's window is the target's
    code = main(["sample", *data, "--generator", str(ckpt), "--out", str(tmp_path / "sample"), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert nib.load(tmp_path / "sample" / "adversarial_seg.nii.gz").shape == nib.load(tiny_files["ct"]).shape
    # the same network declared to run on whole slices: the generator still loads, with one warning line
    code = main(["evaluate", *data, "--sliding-window", "none", "--generator", str(ckpt), "--samples", "1"])
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "sliding window" in line]
    assert len(lines) == 1 and "trained against its network run by a 16 x 16 sliding window, but this target " \
                               "runs on whole slices" in lines[0]


def test_window_mismatch_is_none_for_older_checkpoints_and_agreement():
    from types import SimpleNamespace

    from napari_advseg.attack.checkpoint import window_mismatch

    windowed = SimpleNamespace(sliding_window={"roi_size": [16, 16]})
    whole = SimpleNamespace(sliding_window=None)
    assert window_mismatch({"target": {"path": "x.pt", "sha256": None}}, windowed) is None  # before the record
    assert window_mismatch({"target": {"sliding_window": None}}, whole) is None
    assert "by a 16 x 16 sliding window" in window_mismatch({"target": {"sliding_window": None}}, windowed)


def test_a_windowed_target_is_not_hardened(tiny_files):
    from napari_advseg.defense.hardener import check_hardenable
    from napari_advseg.errors import AdvsegError

    target = load_target(tiny_files["target"], "cpu", sliding_window={"roi_size": [32, 32]})
    with pytest.raises(AdvsegError) as info:
        check_hardenable(target)
    assert "declared sliding window" in str(info.value) and "--sliding-window none" in str(info.value)
    check_hardenable(load_target(tiny_files["target"], "cpu"))  # the same checkpoint on whole slices is
