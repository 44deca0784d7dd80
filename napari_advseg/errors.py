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


def first_line(error: BaseException, path=None, limit: int = 300) -> str:
    """An exception as one readable line: ``"Type: message"`` (the message's first line).

    Parameters
    ----------
    error : BaseException
        The exception to describe.
    path : path-like, optional
        A file the surrounding message names already; it is replaced by
        "the file" inside the exception's text so it is not repeated.
    limit : int
        Longest line returned, in characters (longer ones end in "...").
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if path is not None:
        for quoted in (f'"{path}"', f"'{path}'", str(path)):
            text = text.replace(quoted, "the file")
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
