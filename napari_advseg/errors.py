"""Errors that reach a user: one readable line, naming the file and the problem."""

from __future__ import annotations


class AdvsegError(Exception):
    """A problem with user input (a file, a shape, a model) or a user request.

    The command line prints ``str(error)`` on one line and exits with status 2,
    without a traceback; the napari widgets show it as a notification.
    """


class InputFileError(AdvsegError):
    """A file that is missing, unreadable, or holds the wrong kind of data."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
