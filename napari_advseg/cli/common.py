"""What the subcommands share while running: progress bars, output, and loading the inputs.

Nothing heavy is imported at module level; each helper imports what it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from napari_advseg.errors import AdvsegError

__all__ = ["ProgressBar", "apply_threads", "check_data_args", "default_generator", "dice_line", "is_main_rank", "load_case",
           "load_generator", "load_target", "say", "warn"]


def is_main_rank() -> bool:
    """True outside torchrun, and on rank 0 of a torchrun job (the one that prints)."""
    return int(os.environ.get("RANK", "0")) == 0


class ProgressBar:
    """A tqdm progress bar on stderr that can be switched off (and is only on rank 0).

    It is also the command's step loop for :mod:`~napari_advseg.cli.stop`:
    while it is open, SIGINT/SIGTERM stop the command at the next
    :meth:`step`, that is after the step that was running.
    """

    def __init__(self, total: int, desc: str, quiet: bool, initial: int = 0):
        from napari_advseg.cli.stop import loop_opened

        self.bar = None
        self._open = True
        loop_opened()
        if not quiet and is_main_rank():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)
        from napari_advseg.cli.stop import check_stop

        check_stop()

    def close(self) -> None:
        from napari_advseg.cli.stop import loop_closed

        if self._open:
            self._open = False
            loop_closed()
        if self.bar is not None:
            self.bar.close()


def apply_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op CPU threads, and its inter-op threads where torch still allows it.

    None keeps torch's default. Torch refuses a second change of the inter-op
    pool (or one after parallel work began); that pool is then left as it is.
    """
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def say(text: str) -> None:
    """Print a line of the command's output (rank 0 only)."""
    if is_main_rank():
        print(text, flush=True)


def check_data_args(args: argparse.Namespace) -> None:
    """``--labels`` and ``--series`` need ``--ct``; ``--label-names`` needs ``--labels``."""
    if getattr(args, "label_names", None) is not None and getattr(args, "labels", None) is None:
        raise AdvsegError("--label-names was given without --labels")
    if getattr(args, "ct", None) is None:
        if getattr(args, "labels", None) is not None:
            raise AdvsegError("--labels was given without --ct")
        if getattr(args, "series", None) is not None:
            raise AdvsegError("--series was given without --ct (a DICOM folder)")


def load_target(args: argparse.Namespace):
    """The target of ``--target`` (or the shipped U-Net); checks the data arguments first.

    ``--normalisation`` and ``--class-names`` override what the target's files
    declare; what was assumed for want of a declaration is said on stderr.
    """
    check_data_args(args)
    from napari_advseg.data.samples import sample_file

    return load_target_file(args.target or sample_file("target"), args)


def load_target_file(path, args: argparse.Namespace):
    """The target network in ``path``, with the ``--normalisation``/``--class-names`` overrides of ``args``;
    what was assumed for want of a declaration is said on stderr."""
    from napari_advseg.cli.arguments import target_overrides
    from napari_advseg.models.target_load import load_target as load

    target = load(path, args.device, **target_overrides(args))
    for note in target.notes:
        warn(note)
    return target


def warn(text: str) -> None:
    """Print a warning line on stderr (rank 0 only), beside (not inside) a running progress bar."""
    if is_main_rank():
        from tqdm import tqdm

        tqdm.write(f"advseg: warning: {text}", file=sys.stderr)
        sys.stderr.flush()


def load_generator(args: argparse.Namespace, target):
    """``(generator, config, meta, path)`` of ``--generator`` (or the shipped generator).

    A generator trained against other classes or another input range than
    ``target``'s is refused with the same message as everywhere else.
    """
    from napari_advseg.attack.checkpoint import load_generator as load, window_mismatch
    from napari_advseg.data.samples import sample_file

    path = args.generator or sample_file("generator")
    generator, config, meta = load(path, args.device, target=target)
    note = window_mismatch(meta, target)
    if note is not None:
        warn(f"{path}: {note}")
    return generator, config, meta, str(path)


def load_case(args: argparse.Namespace, target):
    """The case of ``--ct``/``--labels``/``--label-names``/``--series`` (or the shipped phantom), scaled for
    ``target``.

    The target is checked at the case's slice size before anything runs on it. Reference labels whose
    class names (``--label-names``, else the labels' sidecar, else the six organs) differ from the target's
    classes are mapped by name, and what that changed is said on stderr.
    """
    from napari_advseg.data.cases import load_case as load
    from napari_advseg.models.folder_targets import fit_target_to_volume
    from napari_advseg.models.target import validate_target

    check_data_args(args)
    case = load(args.ct, args.labels, target.normalisation, target.class_names, series=args.series,
                label_names=getattr(args, "label_names", None))
    fit_target_to_volume(target, case.volume)
    validate_target(target, *case.images.shape[-2:])
    message = None if case.class_mapping is None else case.class_mapping.message()
    if message:
        warn(message)
    return case


def load_attack(args: argparse.Namespace):
    """``(target, generator, config, generator_path, case)`` for the commands that run a trained generator."""
    target = load_target(args)
    generator, config, _, path = load_generator(args, target)
    return target, generator, config, path, load_case(args, target)


def default_generator(args: argparse.Namespace) -> Path | None:
    """``--generator``, or the shipped one when the shipped target and data are used."""
    from napari_advseg.data.samples import sample_file

    if args.generator is not None:
        return args.generator
    if args.target is None and args.ct is None:
        return Path(sample_file("generator"))
    return None


def dice_line(dice: dict) -> str:
    """``"liver 95.1, spleen 93.0"``: Dice in % per organ, absent organs left out."""
    return ", ".join(f"{organ} {100 * d:.1f}" for organ, d in dice.items() if d is not None)
