"""Stopping a command on SIGINT (Ctrl-C) or SIGTERM, after the current step of its loop.

The handlers are installed by :func:`stop_on_signals` around one command, in
the main thread of a single-process ``advseg`` only (never in napari's
process, never in a torchrun rank, whose launcher owns the signals). SIGINT
is handled even where it was inherited as ignored (a job started in the
background by a non-interactive shell), so ``kill -INT`` stops it too.

While a step loop is open (a :class:`~napari_advseg.cli.common.ProgressBar`),
the first signal asks it to stop at its next step (:func:`check_stop` raises
there); otherwise, and on a second signal, :class:`StopRequested` is raised at
once. The training driver saves its checkpoint on the way out either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

__all__ = ["StopRequested", "check_stop", "exit_status", "loop_closed", "loop_opened", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"installed": False, "signum": None, "loops": 0}


class StopRequested(KeyboardInterrupt):
    """A stop asked for by signal ``signum``; a KeyboardInterrupt, so every Ctrl-C path handles it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def exit_status(exc: KeyboardInterrupt) -> int:
    """128 + the signal number (130 for SIGINT and a plain Ctrl-C, 143 for SIGTERM)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def check_stop() -> None:
    """Raise :class:`StopRequested` if a signal asked the command to stop (called between steps)."""
    if _state["signum"] is not None:
        raise StopRequested(_state["signum"])


def loop_opened() -> None:
    """A step loop opened: a first signal now waits for its next :func:`check_stop`."""
    _state["loops"] += 1


def loop_closed() -> None:
    """The step loop of :func:`loop_opened` ended."""
    _state["loops"] = max(0, _state["loops"] - 1)


def _handle(signum, frame) -> None:
    if _state["signum"] is None and _state["loops"] > 0:
        _state["signum"] = signum
        # os.write, not print: a handler may run while the main thread is inside a print to stderr
        os.write(2, f"\nadvseg: {signal.Signals(signum).name} received, stopping after the current step "
                    "(send it again to stop at once)\n".encode())
        return
    raise StopRequested(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described above while the block runs; the old handlers come back after."""
    if (threading.current_thread() is not threading.main_thread() or _state["installed"]
            or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, _handle)
    _state.update(installed=True, signum=None, loops=0)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.update(installed=False, signum=None, loops=0)
