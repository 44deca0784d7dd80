"""Argument types and option groups the subcommands share (torch-free: the parser imports it)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from napari_advseg.device import DEVICE_CHOICES

__all__ = ["LABELS_HELP", "NORMALISATION_SYNTAX", "SPLITS", "ExpertOptions", "add_common", "add_data", "add_target",
           "add_target_overrides", "class_names", "floats", "folds", "label_names", "non_negative_float",
           "non_negative_int", "normalisation", "organ_names", "positive_int", "shape", "slice_list", "sliding_window",
           "target_overrides", "window"]

SPLITS = ("all", "train", "test")
"""Slice splits of a case: all, train (z % 3 != 2), test (z % 3 == 2)."""
LABELS_HELP = "reference labels, NIfTI on the CT's grid (default: the sample's labels when --ct is left out)"


def floats(text: str) -> list[float]:
    """``"0.5,1,2"`` -> [0.5, 1.0, 2.0]."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def slice_list(text: str) -> list[int]:
    """``"3,10-12"`` -> [3, 10, 11, 12] (axial slice indices of the canonical volume)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                out.extend(range(low, high + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected slice indices like 3,10-12, got {text!r}") from None
    return out


def window(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` in HU, LOW < HIGH."""
    values = floats(text)
    if len(values) != 2 or values[0] >= values[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in HU with LOW < HIGH, got {text!r}")
    return values[0], values[1]


NORMALISATION_SYNTAX = "zscore | window:LO,HI[:A,B] | ct:LO,HI,MEAN,STD | none"
"""What ``--normalisation`` accepts (HU; A,B is the window's output range, default -1,1)."""


def normalisation(text: str) -> dict:
    """``--normalisation``: ``zscore``, ``window:LO,HI[:A,B]``, ``ct:LO,HI,MEAN,STD`` or ``none`` -> a normalisation dict.

    ``window`` clips HU to [LO, HI] and maps it linearly to [A, B] (default
    [-1, 1]); ``ct`` clips HU to [LO, HI], subtracts MEAN and divides by STD
    (HU, STD > 0); ``none`` passes HU unchanged. Checked fully here, without
    torch, so a bad value is an argument error.
    """
    mode, _, rest = text.strip().partition(":")
    mode = mode.strip().lower()
    bad = argparse.ArgumentTypeError(f"expected {NORMALISATION_SYNTAX}, got {text!r}")
    if mode in ("zscore", "none"):
        if rest.strip():
            raise bad
        return {"mode": mode}
    if mode == "window":
        parts = rest.split(":")
        if len(parts) not in (1, 2):
            raise bad
        try:
            pairs = [_increasing_pair(part) for part in parts]
        except ValueError:
            raise bad from None
        out = {"mode": "window", "window": pairs[0]}
        if len(pairs) == 2:
            out["range"] = pairs[1]
        return out
    if mode == "ct":
        try:
            values = [float(v) for v in rest.split(",")]
        except ValueError:
            raise bad from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] >= values[1] or values[3] <= 0:
            raise argparse.ArgumentTypeError(
                f"expected ct:LO,HI,MEAN,STD in HU with LO < HI and STD > 0, got {text!r}")
        return {"mode": "ct", "clip": values[:2], "mean": values[2], "std": values[3]}
    raise bad


def _increasing_pair(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] >= values[1]:
        raise ValueError(text)
    return values


def _names(text: str, each: str) -> list[str]:
    """Comma-separated names, none empty or repeated; an argparse error saying what ``each`` name stands for."""
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated class names, {each}, none empty or repeated, got {text!r}")
    return names


def class_names(text: str) -> list[str]:
    """``--class-names``: ``"background,liver,spleen"`` -> one name per output channel, none empty or repeated."""
    return _names(text, "one per output channel")


def organ_names(text: str) -> list[str]:
    """``--organs``: ``"liver,spleen"`` -> the target's classes to report, none empty or repeated."""
    return _names(text, "classes of the target")


def label_names(text: str) -> list[str]:
    """``--label-names``: ``"background,spleen,kidney_left,liver"`` -> the name of label value 0, 1, ...;
    none empty or repeated, at most 256 (the values of a uint8 label map)."""
    names = _names(text, "one per label value, value 0 first")
    if len(names) > 256:
        raise argparse.ArgumentTypeError(f"expected at most 256 label names (values 0..255), got {len(names)}")
    return names


def shape(text: str) -> tuple[int, int, int]:
    """``"Z,Y,X"``, three integers >= 4 (voxels)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (three integers), got {text!r}") from None
    if len(values) != 3 or min(values) < 4:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (three integers >= 4), got {text!r}")
    return values


def _at_least(text: str, kind: type, noun: str, low: int):
    """``kind(text)`` if it is at least ``low`` (NaN is not); an argparse error naming ``noun`` otherwise."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if not value >= low:
        raise argparse.ArgumentTypeError(f"expected {noun} >= {low}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    return _at_least(text, int, "an integer", 0)


def non_negative_float(text: str) -> float:
    return _at_least(text, float, "a number", 0)


class _HelpAll(argparse.Action):
    """``--help-all``: show the expert options too, print the help and exit."""

    def __init__(self, option_strings, expert: "ExpertOptions", help: str | None = None, **_):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.expert = expert

    def __call__(self, parser, namespace, values, option_string=None):
        self.expert.show()
        parser.print_help()
        parser.exit()


class ExpertOptions:
    """Options a subcommand accepts but hides from ``--help``; its ``--help-all`` lists them."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._hidden: list[tuple[argparse.Action, str | None]] = []
        parser.add_argument("--help-all", action=_HelpAll, expert=self,
                            help="show this help with every option, the expert ones too, and exit")

    def hide(self, action: argparse.Action) -> argparse.Action:
        """Leave ``action`` out of ``--help`` (it still parses)."""
        self._hidden.append((action, action.help))
        action.help = argparse.SUPPRESS
        return action

    def show(self) -> None:
        for action, text in self._hidden:
            action.help = text

    def __len__(self) -> int:
        return len(self._hidden)


def positive_int(text: str) -> int:
    return _at_least(text, int, "an integer", 1)


def add_common(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """``--device``, ``--threads``, ``--seed`` (unless the command takes it from its config) and ``--quiet``."""
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES),
                   help="where to compute: auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads of torch (default: torch's own choice; 1 is often fastest on a busy machine)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed of every draw (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data(p: argparse.ArgumentParser, labels_help: str = LABELS_HELP, expert: ExpertOptions | None = None) -> None:
    """``--ct``, ``--series`` (an expert option where ``expert`` is given), ``--labels``, ``--label-names``."""
    p.add_argument("--ct", type=Path, help="CT volume: a NIfTI file (.nii or .nii.gz) in Hounsfield units, or a "
                                           "DICOM CT series (its folder or one of its files) "
                                           "(default: the shipped phantom)")
    series = p.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID to read when the --ct folder "
                                                            "holds several series (the error without it lists them)")
    if expert is not None:
        expert.hide(series)
    p.add_argument("--labels", type=Path, help=labels_help)
    p.add_argument("--label-names", type=label_names, metavar="NAMES",
                   help="the names of the label values, comma-separated, value 0 first, e.g. "
                        "background,spleen,kidney_right,liver; overrides the labels' .json sidecar (default: "
                        "the sidecar, else background,liver,spleen,kidney_left,kidney_right,pancreas); values are "
                        "scored as the target's classes of the same name")


def add_target(p: argparse.ArgumentParser) -> None:
    """``--target`` and what may be declared about it (:func:`add_target_overrides`)."""
    p.add_argument("--target", type=Path, help="target segmentation network: a project checkpoint (.pt from "
                                               "train-target), TorchScript, an nnU-Net v2 trained-model folder "
                                               "(2d or 3d_fullres) or a MONAI bundle folder (2D or 3D) (default: "
                                               "the shipped U-Net)")
    add_target_overrides(p)


def add_target_overrides(p: argparse.ArgumentParser) -> None:
    """``--normalisation`` and ``--class-names``: they override what the target's files declare."""
    p.add_argument("--normalisation", type=normalisation, metavar="SPEC",
                   help=f"how the target's input was normalised ({NORMALISATION_SYNTAX}; HU, A,B the window's "
                        "output range, default -1,1); overrides the model file and its .json sidecar "
                        "(default: what they declare, else zscore)")
    p.add_argument("--class-names", type=class_names, metavar="NAMES",
                   help="the target's output channels, comma-separated, e.g. background,liver,spleen; overrides "
                        "the model file and its .json sidecar")
    p.add_argument("--sliding-window", type=sliding_window, metavar="H,W[:OVERLAP[:MODE]]",
                   help="run a model file's network over each slice by a sliding window of H x W pixels (a network "
                        "trained on patches), overlap default 0.25, MODE constant (default) or gaussian, as MONAI's "
                        "SlidingWindowInferer; none: whole slices; overrides the model file and its .json sidecar "
                        "(default: what they declare, else whole slices)")
    p.add_argument("--fold", type=folds, metavar="K[,K...]",
                   help="an nnU-Net folder's fold (0, all...); several, comma-separated, make an ensemble "
                        "(default: the first fold with a checkpoint)")


def sliding_window(text: str) -> dict | str:
    """``--sliding-window``: ``96,96``, ``96,96:0.5`` or ``96,96:0.5:gaussian`` -> a sliding-window declaration;
    ``none`` -> ``"none"`` (whole slices, declared)."""
    from napari_advseg.models.target_meta import check_sliding_window

    if text.strip().lower() == "none":
        return "none"  # declared: whole slices
    parts = text.split(":")
    try:
        if len(parts) > 3:
            raise ValueError("expected at most three parts, H,W[:OVERLAP[:MODE]]")
        roi = [int(v) for v in parts[0].split(",")]
        window = {"roi_size": roi}
        if len(parts) > 1:
            window["overlap"] = float(parts[1])
        if len(parts) > 2:
            window["mode"] = parts[2].strip()
        return check_sliding_window(window)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected H,W[:OVERLAP[:MODE]] such as 96,96:0.25:gaussian, got "
                                         f"{text!r} ({error})") from None


def folds(text: str) -> list[str]:
    """``--fold``: ``"0"`` or ``"0,1,2"`` -> the fold names, none empty or repeated."""
    names = [part.strip() for part in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected fold names like 0 or 0,1,2 (none empty or repeated), got {text!r}")
    return names


def target_overrides(args: argparse.Namespace) -> dict:
    """``{"class_names": ..., "normalisation": ..., "folds": ..., "sliding_window": ...}`` of the parsed flags (None
    where not given)."""
    return {"class_names": getattr(args, "class_names", None), "normalisation": getattr(args, "normalisation", None),
            "folds": getattr(args, "fold", None), "sliding_window": getattr(args, "sliding_window", None)}
