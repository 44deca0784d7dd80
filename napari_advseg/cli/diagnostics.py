"""Warnings of the commands: one ``advseg: warning: ...`` line on stderr (rank 0 only)."""

from __future__ import annotations

import sys


def warn(text: str) -> None:
    """Print one warning line on stderr, beside (not inside) a running progress bar."""
    from napari_advseg.cli.common import is_main_rank

    if is_main_rank():
        from tqdm import tqdm

        tqdm.write(f"advseg: warning: {text}", file=sys.stderr)
        sys.stderr.flush()


def check_clean_dice(target, case) -> None:
    """Warn when the target's clean Dice on the case's labels is implausibly low (nothing without labels)."""
    from napari_advseg.evaluation.diagnostics import clean_dice_warning

    if case.labels is None:
        return
    message = clean_dice_warning(target, case.images, case.labels)
    if message is not None:
        warn(message)
