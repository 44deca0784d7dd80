"""The ``advseg`` argument parser, built from the subcommand modules (none of which imports torch)."""

from __future__ import annotations

import argparse

from napari_advseg import __version__
from napari_advseg.cli import curve, evaluate, harden, make_sample, sample, target, train

__all__ = ["build_parser"]

SUBCOMMANDS = (target.add_parser, train.add_train_parser, evaluate.add_parser, train.add_sweep_parser,
               sample.add_parser, curve.add_parser, harden.add_harden_parser, harden.add_robustness_parser,
               make_sample.add_parser)
"""Each adds one subcommand (in the order ``--help`` lists them) and stores its run function as ``func``."""


def build_parser() -> argparse.ArgumentParser:
    """The ``advseg`` argument parser; ``parse_args(...).func(args)`` runs the chosen command."""
    parser = argparse.ArgumentParser(prog="advseg", allow_abbrev=False, description=(
        "Attack a segmentation CNN with a learnt generator of smooth deformations and bias fields "
        "(Chen et al., MICCAI-W 2019). Inputs left out default to the shipped sample data."))
    parser.add_argument("--version", action="version", version=f"advseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():
        command.allow_abbrev = False  # a flag is its field's full name, never a prefix of it
    return parser
