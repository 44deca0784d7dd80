"""The target contract: any slice size (padding to the network's stride), and load errors naming their cause."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_advseg.cli import main
from napari_advseg.errors import InputFileError
from napari_advseg.models.target import VALIDATION_SIZE, make_target, validate_target
from napari_advseg.models.target_files import export_torchscript
from napari_advseg.models.target_load import load_target

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]


class Stride16(nn.Module):
    """Down by 16 and back up, with a full-resolution skip: H and W must be multiples of 16."""

    def __init__(self, in_channels: int = 1, n_classes: int = 6):
        super().__init__()
        self.down = nn.Conv2d(in_channels, 4, 16, stride=16)
        self.up = nn.ConvTranspose2d(4, 4, 16, stride=16)
        self.head = nn.Conv2d(in_channels + 4, n_classes, 1)

    def forward(self, x):
        return self.head(torch.cat([x, torch.tanh(self.up(self.down(x)))], 1))


class ChecksChannels(nn.Module):
    """Refuses its input with a message that does not name the channels; the first conv takes 3."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("unsupported input")
        return self.conv(x)


def script_file(tmp_path, module: nn.Module, name: str, extra: dict | None = None):
    torch.manual_seed(0)
    path = tmp_path / name
    torch.jit.save(torch.jit.script(module.eval()), str(path), _extra_files=extra or {})
    return path


def load_error(path, **kwargs) -> str:
    with pytest.raises(InputFileError) as info:
        load_target(path, "cpu", **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("size", [(72, 72), (100, 100), (37, 83)])
def test_stride_16_network_runs_on_any_size_through_padding(tmp_path, size):
    path = script_file(tmp_path, Stride16(), "stride16.ts")
    target = load_target(path, "cpu")
    validate_target(target, *size)  # what the commands do at the CT's slice size
    assert target.input_multiple == 16
    network = torch.jit.load(str(path))
    height, width = size
    torch.manual_seed(1)
    x = torch.randn(2, 1, height, width, requires_grad=True)
    logits = target(x)
    assert logits.shape == (2, 6, height, width)
    pad_h, pad_w = -height % 16, -width % 16
    padded = F.pad(x.detach(), [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], mode="replicate")
    with torch.no_grad():
        expected = network(padded)[..., pad_h // 2: pad_h // 2 + height, pad_w // 2: pad_w // 2 + width]
    torch.testing.assert_close(logits.detach(), expected, rtol=0, atol=0)
    logits[:, 1].sum().backward()  # the attack back-propagates through the padding
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.model.parameters())


def test_fitting_sizes_give_exactly_the_network_output(tmp_path):
    path = script_file(tmp_path, Stride16(), "stride16.ts")
    target = load_target(path, "cpu")
    network = torch.jit.load(str(path))
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(target(x), network(x))


def test_networks_that_take_any_size_are_not_padded(tmp_path):
    from napari_advseg.models.unet import UNet2D

    torch.manual_seed(0)
    unet = UNet2D(base_channels=4, depth=2)
    assert make_target(unet).input_multiple == 1
    exported = load_target(export_torchscript(unet, tmp_path / "unet.ts"), "cpu")
    assert exported.input_multiple == 1  # it pads itself
    assert load_target(script_file(tmp_path, nn.Conv2d(1, 6, 3, padding=1), "conv.ts"), "cpu").input_multiple == 1
    assert make_target(Stride16()).input_multiple == 16


def test_declared_input_multiple_is_used_and_checked(tmp_path):
    meta = {"format": "napari-advseg-torchscript", "input_multiple": 32}
    path = script_file(tmp_path, Stride16(), "declared.ts", {"advseg.json": json.dumps(meta)})
    assert load_target(path, "cpu").input_multiple == 32
    meta["input_multiple"] = 0
    path = script_file(tmp_path, Stride16(), "zero.ts", {"advseg.json": json.dumps(meta)})
    assert "invalid input_multiple 0" in load_error(path)


def test_three_input_channels_named_from_the_error_text(tmp_path):
    path = script_file(tmp_path, nn.Sequential(nn.Conv2d(3, 6, 3, padding=1)), "rgb.ts")
    message = load_error(path)
    assert "expects 3 input channels (its first convolution) but a target is given 1" in message
    assert "TorchScript interpreter" not in message


def test_three_input_channels_named_from_the_first_convolution(tmp_path):
    message = load_error(script_file(tmp_path, ChecksChannels(), "checks.ts"))
    assert "expects 3 input channels (its first convolution's weight is (6, 3, 3, 3))" in message


def test_other_failures_name_the_last_cause_not_the_interpreter_banner(tmp_path):
    class Fails(nn.Module):
        def forward(self, x):
            return torch.cat([x, x[..., :-1]], 1)

    message = load_error(script_file(tmp_path, Fails(), "fails.ts"))
    assert "fails on a single-channel (1, 1, 64, 64) test image: RuntimeError: Sizes of tensors must match" in message


def test_a_network_that_works_on_one_size_only(tmp_path):
    class OneSize(nn.Module):
        def forward(self, x):
            if x.shape[-1] != 64:
                raise ValueError("only 64 pixels")
            return x.repeat(1, 6, 1, 1)

    message = load_error(script_file(tmp_path, OneSize(), "one_size.ts"))
    assert f"works on a {VALIDATION_SIZE}x{VALIDATION_SIZE} input but on no other size" in message
    assert "only 64 pixels" in message


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.Sequential(nn.Conv2d(3, 6, 3, padding=1)), "expects 3 input channels"),
        (nn.Conv2d(1, 4, 3, padding=1), "outputs 4 channels but 6 classes are expected"),
    ],
)
def test_cli_exits_2_with_one_line(tiny_files, tmp_path, capsys, module, expected):
    path = script_file(tmp_path, module, "bad.pt")
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 2
    assert expected in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
