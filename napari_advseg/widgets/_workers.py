"""Background jobs: napari ``thread_worker``s that can always be stopped and joined.

Every job of the widget goes through :class:`JobRegistry`, so that closing
the widget or napari can ask each one to stop and wait until its thread is
done (a training job then saves its checkpoint in its own ``finally``).
"""

from __future__ import annotations

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
