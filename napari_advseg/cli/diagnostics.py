"""The commands' check of the target on the given labels, warned as one ``advseg: warning: ...`` line."""

from __future__ import annotations

from napari_advseg.cli.common import warn


def check_clean_dice(target, case) -> None:
    """Warn when the target's clean Dice on the case's labels is implausibly low (nothing without labels)."""
    from napari_advseg.evaluation.diagnostics import clean_dice_warning

    if case.labels is None:
        return
    message = clean_dice_warning(target, case.images, case.labels)
    if message is not None:
        warn(message)
