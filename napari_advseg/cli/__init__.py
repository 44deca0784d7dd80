"""``advseg``: the command line over the core (headless and cluster use).

Every input left out defaults to the shipped sample data. Errors in the
input print one line naming the file and the problem (exit status 2), never a
traceback; set ``ADVSEG_DEBUG=1`` to see tracebacks of unexpected errors.

Layout: :mod:`~napari_advseg.cli.parser` builds the parser from the
subcommand modules (``target``, ``train``, ``evaluate``, ``sample``,
``curve``, ``harden``, ``make_sample``), each of which adds its arguments and
imports its implementation (torch and the rest) only inside its ``run``
functions, so ``--help`` and argument errors answer at once. Helpers the
subcommands share are in :mod:`~napari_advseg.cli.common` (running) and
:mod:`~napari_advseg.cli.arguments` (parsing).
"""

from __future__ import annotations

import os
import sys

from napari_advseg.errors import AdvsegError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``advseg`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from napari_advseg.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        try:
            return int(args.func(args) or 0)
        finally:
            from napari_advseg.attack.distributed import shutdown_distributed

            shutdown_distributed()
    except AdvsegError as exc:
        print(f"advseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, unless debugging
        if os.environ.get("ADVSEG_DEBUG"):
            raise
        print(f"advseg: unexpected error: {type(exc).__name__}: {exc} (set ADVSEG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
