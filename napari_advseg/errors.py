"""Errors that reach a user: one readable line, naming the file and the problem."""

from __future__ import annotations

import re


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


_LEADING_PATH = re.compile(
    r"(?P<path>(?:[A-Za-z]:[\\/]|[/~]|\.{1,2}[\\/])[^:\n]*|[^\s:]*[\\/][^\s:]*|[^\s:/\\]+\.[A-Za-z][A-Za-z0-9]{0,5})"
    r": (?P<rest>.+)", re.S)
"""A message that starts with a file's path and a colon: an absolute or home path (spaces allowed), a
relative one with a separator, or a bare file name with an extension."""


def path_last(message: BaseException | str) -> str:
    """A message for a narrow window (a notification, a status line): the problem first, the file after it.

    ``"/a/long/folder/ct.nii.gz: not a NIfTI file"`` becomes ``"not a NIfTI file
    (/a/long/folder/ct.nii.gz)"``, so the cause stays readable where the end of
    the line is cut off. Other messages are returned as they are. The command
    line prints the whole line and keeps the path first.
    """
    if isinstance(message, InputFileError):
        return f"{message.problem} ({message.path})"
    text = str(message)
    match = _LEADING_PATH.fullmatch(text)
    if match is None:
        return text
    return f"{match.group('rest')} ({match.group('path')})"
