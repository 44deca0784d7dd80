"""Background jobs: napari ``thread_worker``s that can always be stopped and joined.

Every job of the widget goes through :class:`JobRegistry`, so that closing
the widget or napari can ask each one to stop and wait until its thread is
done (a training job then saves its checkpoint in its own ``finally``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator

from qtpy.QtCore import Qt

from napari_advseg.errors import AdvsegError, first_line


class WorkerError(Exception):
    """A failure inside a generator job, re-raised as a plain Exception.

    superqt's generator worker treats a ``RuntimeError`` escaping the
    generator as "the worker was deleted" and then emits neither ``errored``
    nor ``finished``; torch raises RuntimeError for many real failures, so
    jobs convert them.
    """


def _drive(inner: Iterator):
    try:
        return (yield from inner)
    except RuntimeError as exc:
        raise WorkerError(first_line(exc)) from exc


BACKGROUND_NICE = 10
"""How much lower than the viewer a background computation's thread runs (Linux nice increment)."""


@contextlib.contextmanager
def background_priority(device: str = "auto") -> Iterator[None]:
    """Run the calling thread's heavy computation behind the viewer's.

    On Linux the thread's nice value goes up by :data:`BACKGROUND_NICE` (for
    good: an unprivileged thread cannot take it back, so use this only in a
    thread of its own, :func:`in_own_thread`); on the CPU, torch computes with
    one core fewer than the machine has (at least one) until the block ends,
    so that the viewer's renders find a core free. Torch threads started from
    this thread inherit its nice value.
    """
    import torch

    from napari_advseg.device import resolve_device

    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
        except (OSError, AttributeError):  # not permitted here: run at the normal priority
            pass
    threads = None
    if resolve_device(device).type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - 1)))
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(threads)


def in_own_thread(make: Callable[[], Iterator], setup: Callable[[], contextlib.AbstractContextManager] | None = None,
                  name: str = "advseg-background") -> Iterator:
    """A generator that runs the iterator ``make()`` step by step in a new thread of its own.

    Each ``next`` advances the iterator one step in that thread and waits for
    it, so the caller keeps a generator's pace (a paused consumer pauses it);
    closing this generator closes the iterator in its thread (its ``finally``
    runs there) and waits for the thread to end. Errors are re-raised in the
    caller; the return value is returned. ``setup()``, a context manager,
    wraps the whole run inside the thread (e.g. :func:`background_priority`).
    """
    requests: queue.Queue = queue.Queue()
    replies: queue.Queue = queue.Queue()

    def serve() -> None:
        try:
            iterator = make()
        except BaseException as exc:
            replies.put(("error", exc))
            return
        while True:
            if requests.get() == "close":
                try:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
                    replies.put(("closed", None))
                except BaseException as exc:
                    replies.put(("error", exc))
                return
            try:
                value = next(iterator)
            except StopIteration as stop:
                replies.put(("return", stop.value))
                return
            except BaseException as exc:
                replies.put(("error", exc))
                return
            replies.put(("value", value))

    def run() -> None:
        try:
            with setup() if setup is not None else contextlib.nullcontext():
                serve()
        except BaseException as exc:  # the setup failed: no step ran
            replies.put(("error", exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    ended = False
    try:
        thread.start()
        while True:
            requests.put("next")
            kind, value = replies.get()
            if kind != "value":
                ended = True
                if kind == "error":
                    raise value
                return value
            yield value
    finally:
        if not ended and thread.is_alive():
            requests.put("close")
            kind, value = replies.get()
            ended = True
            if kind == "error":
                thread.join()
                raise value
        thread.join()


def call_in_own_thread(function: Callable, *args, setup=None, name: str = "advseg-background", **kwargs):
    """``function(*args, **kwargs)`` run in a new thread of its own (see :func:`in_own_thread`); its result."""
    def once() -> Iterator:
        yield function(*args, **kwargs)

    with contextlib.closing(in_own_thread(once, setup, name)) as results:
        return next(results)


class Job:
    """One running worker, with a flag that is set when its thread is done.

    Attributes
    ----------
    worker : napari's GeneratorWorker or FunctionWorker
    name : str
    done : threading.Event
        Set in the worker thread when the job has finished (or was aborted).
    close_error : BaseException or None
        An error raised while closing an aborted generator (its ``finally``).
    """

    def __init__(self, worker, name: str, inner: Iterator | None = None):
        self.worker = worker
        self.name = name
        self.inner = inner
        self.done = threading.Event()
        self.started = threading.Event()
        self.close_error: BaseException | None = None
        self.cancel_requested = False
        # Direct connections run in the worker thread, before the queued slots.
        worker.started.connect(self.started.set, Qt.DirectConnection)
        worker.finished.connect(self.done.set, Qt.DirectConnection)
        if inner is not None:
            worker.aborted.connect(self._close_inner, Qt.DirectConnection)

    def _close_inner(self) -> None:
        """Close the job's generator in its own thread, so that its ``finally`` runs now."""
        try:
            self.inner.close()
        except BaseException as exc:  # reported by whoever waits on the job
            self.close_error = exc

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def stop(self) -> None:
        """Ask the job to stop (generator jobs stop after the current step)."""
        self.cancel_requested = True
        self.worker.quit()

    def join(self, timeout: float = 60.0, start_grace: float = 0.25) -> bool:
        """Wait until the job's thread is done. True when it is, or when it never started.

        No Qt events are processed while waiting (this runs while napari
        closes). A worker started from a running event loop only begins on a
        zero timer; one that has not begun within ``start_grace`` seconds
        cannot do so before the wait ends, and after :meth:`stop` it will
        abort at once when it does.
        """
        begin = time.monotonic()
        while not self.done.is_set():
            now = time.monotonic()
            if now - begin >= timeout:
                return False
            if not self.started.is_set() and now - begin >= start_grace:
                return True
            self.done.wait(0.02)
        return True


class JobRegistry:
    """The widget's jobs; :meth:`stop_all` stops and joins all of them."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.closed = False

    def _prune(self) -> None:
        self.jobs = [job for job in self.jobs if job.running]

    def generator_job(self, name: str, inner: Iterator, connect: dict[str, Callable] | None = None) -> Job:
        """Run the generator ``inner`` in a thread_worker; each yielded value goes to ``yielded``."""
        from napari.qt.threading import create_worker

        if self.closed:
            raise AdvsegError("the widget is closed")
        worker = create_worker(_drive, inner, _start_thread=False, _ignore_errors=True)
        return self._start(Job(worker, name, inner), connect)

    def function_job(self, name: str, function: Callable, *args, connect: dict[str, Callable] | None = None,
                     quick: bool = False, **kwargs) -> Job:
        """Run ``function(*args, **kwargs)`` in a thread_worker.

        ``quick`` jobs (slice renders, many per second while a slider moves)
        use superqt's worker directly, which napari's ``create_worker`` wraps:
        napari registers every worker in the window's task list for good,
        which would keep each render's inputs alive.
        """
        if quick:
            from superqt.utils import create_worker
        else:
            from napari.qt.threading import create_worker

        if self.closed:
            raise AdvsegError("the widget is closed")
        worker = create_worker(function, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        return self._start(Job(worker, name), connect)

    def _start(self, job: Job, connect: dict[str, Callable] | None) -> Job:
        for signal, slot in (connect or {}).items():
            getattr(job.worker, signal).connect(slot)
        self._prune()
        self.jobs.append(job)
        job.worker.start()
        return job

    def running(self, name: str | None = None) -> list[Job]:
        self._prune()
        return [job for job in self.jobs if name is None or job.name == name]

    def stop_all(self, timeout: float = 120.0) -> bool:
        """Stop every job and wait for all of them; True when none is left running."""
        self.closed = True
        jobs = list(self.jobs)
        for job in jobs:
            job.stop()
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
        self._prune()
        return not self.jobs
