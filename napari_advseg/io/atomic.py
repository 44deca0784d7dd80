"""Writing files so that a crash never leaves a partial one, and reading checkpoints safely."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_advseg.errors import AdvsegError, InputFileError, first_line


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = True,
                 suffix: str | None = None) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is flushed to disk (fsync) before the rename, and the
    rename is atomic on one file system, so readers see either the old file
    or the whole new one, even after a crash; on any error the temporary file
    is removed.

    Parameters
    ----------
    path : str or path-like
        The file to write. Missing parent folders are created.
    write : callable
        Writes the whole content to the path it is given.
    overwrite : bool, optional
        Replace an existing file (default); when False an existing file is an error.
    suffix : str, optional
        Ending of the temporary file's name, for writers that choose the
        format by name (e.g. ``".nii.gz"``); default the suffixes of ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise AdvsegError(f"{path}: exists already (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # rb+: Windows refuses fsync on a read-only handle
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    import torch  # here, not at the top: the NIfTI writer uses this module and must not pull in torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (identifies the checkpoint behind a sample)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_if_file(path: str | os.PathLike | None) -> str | None:
    """:func:`file_sha256` of ``path``, or None when it is None or not a file (an in-memory model, a moved file)."""
    return file_sha256(path) if path and Path(path).is_file() else None


def load_torch_dict(path: str | os.PathLike, expected_format: str,
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a project checkpoint with ``weights_only=True`` and check its kind.

    Raises :class:`InputFileError` naming the file for a missing file, a file
    torch cannot read, or a dict of another format.
    """
    import torch  # here, not at the top: see save_torch

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here: pickle, zip, unpickling policy
        raise InputFileError(path, f"not a readable PyTorch checkpoint ({first_line(exc, path, 200)})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputFileError(path, f"not a {expected_format} checkpoint (found {found!r})")
    missing = [key for key in required if key not in data]
    if missing:
        raise InputFileError(path, f"checkpoint lacks {', '.join(missing)}")
    return data
