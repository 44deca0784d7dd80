"""``advseg``: the command line over the core (headless and cluster use).

Every input left out defaults to the shipped sample data. Errors in the
input print one line naming the file and the problem (exit status 2), never a
traceback; set ``ADVSEG_DEBUG=1`` to see tracebacks of unexpected errors.
SIGINT (Ctrl-C) and SIGTERM stop a command after its current step, saving
what a training command has done (:mod:`~napari_advseg.cli.stop`); the exit
status is 130 or 143.

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

    from napari_advseg.cli.stop import exit_status, stop_on_signals

    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():
            from napari_advseg.cli.common import apply_threads, warn
            from napari_advseg.io.dicom_series import notices_to

            apply_threads(getattr(args, "threads", None))
            try:
                with notices_to(warn):  # how a DICOM folder was read: one warning line each
                    return int(args.func(args) or 0)
            finally:
                from napari_advseg.attack.distributed import shutdown_distributed

                shutdown_distributed()
    except AdvsegError as exc:
        print(f"advseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"advseg: stopped ({exc or 'interrupted'})", file=sys.stderr)
        return exit_status(exc)
    except Exception as exc:  # last resort: one line, unless debugging
        if os.environ.get("ADVSEG_DEBUG"):
            raise
        print(f"advseg: unexpected error: {type(exc).__name__}: {exc} (set ADVSEG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
