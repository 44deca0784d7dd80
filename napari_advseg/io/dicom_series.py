"""Finding DICOM CT series: which files of a folder (or list) are DICOM images, grouped by SeriesInstanceUID.

:func:`find_series` reads only the headers (no pixel data, with
:func:`napari_advseg.io.dicom_header.read_slice_header`) and groups the
image files by series; :func:`choose_series` picks one by UID or raises
:class:`SeveralSeriesError` listing them. :mod:`napari_advseg.io.dicom` checks,
stacks and reads the chosen series. Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.io.dicom_header import SliceHeader, read_slice_header

__all__ = [
    "DICOM_SUFFIXES",
    "DicomSeries",
    "SeveralSeriesError",
    "choose_series",
    "find_series",
    "is_dicom_file",
    "is_dicom_path",
    "looks_like_dicom",
]

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
"""File name endings taken for DICOM without looking inside (files without one are checked for ``DICM``)."""

_MAX_LISTED_FILES = 3

# ---------------------------------------------------------------------------
# What a folder holds
# ---------------------------------------------------------------------------


@dataclass
class DicomSeries:
    """One DICOM series found by :func:`find_series`.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID.
    description : str
        SeriesDescription ("" when absent).
    number : int or None
        SeriesNumber.
    modality : str
        Modality of its first file (e.g. ``"CT"``).
    files : tuple of pathlib.Path
        Its image files, in the order found (not yet sorted by position).
    where : pathlib.Path
        The folder (or file) it was found in, named in error messages.
    """

    uid: str
    description: str
    number: int | None
    modality: str
    files: tuple[pathlib.Path, ...]
    where: pathlib.Path
    _slices: list[SliceHeader] = field(default_factory=list, repr=False, compare=False)

    @property
    def n_files(self) -> int:
        """Number of image files (slices)."""
        return len(self.files)

    def label(self) -> str:
        """One line for lists: ``UID "description" (N slices, CT)``."""
        description = f' "{self.description}"' if self.description else ""
        return f"{self.uid}{description} ({self.n_files} slice{'s' if self.n_files != 1 else ''}, {self.modality or '?'})"


class SeveralSeriesError(InputFileError):
    """A folder (or list of files) holds several image series and none was chosen.

    Attributes
    ----------
    series : list of DicomSeries
        What was found, for a caller that offers a choice.
    """

    def __init__(self, path, series: Sequence[DicomSeries]):
        self.series = list(series)
        listing = "; ".join(s.label() for s in self.series)
        super().__init__(
            path,
            f"holds {len(self.series)} DICOM series; choose one (advseg --series UID, or the napari "
            f"Data tab's series list): {listing}",
        )


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether a file starts like a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: str | os.PathLike) -> bool:
    """A ``.dcm`` / ``.dicom`` name (existing or not), or an existing file that starts like DICOM."""
    name = os.fspath(path)
    return name.lower().endswith(DICOM_SUFFIXES) or (os.path.isfile(name) and is_dicom_file(name))


def _candidate_files(folder: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
    """Regular, non-hidden files of ``folder`` (and its sub-folders), sorted by path."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    found: list[pathlib.Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(pathlib.Path(root) / name for name in sorted(files) if not name.startswith("."))
    return found


def looks_like_dicom(path: str | os.PathLike, max_files: int = 64) -> bool:
    """Cheap test for readers: a DICOM file, or a folder with a DICOM file among its first files.

    Parameters
    ----------
    path : str or path-like
        A file or a folder.
    max_files : int
        At most this many files of a folder (searched recursively) are looked
        at, so a large folder of other files is declined quickly.
    """
    path = pathlib.Path(path)
    if path.is_file():
        return is_dicom_file(path)
    if not path.is_dir():
        return False
    for count, (root, dirs, files) in enumerate(os.walk(path)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if is_dicom_file(os.path.join(root, name)):
                return True
            max_files -= 1
            if max_files <= 0:
                return False
        if count > max_files:
            return False
    return False


def _no_image(path: pathlib.Path) -> InputFileError:
    """The error for a given file that holds no DICOM image."""
    if not is_dicom_file(path):
        return InputFileError(path, "not a DICOM file: no DICM marker and no image attributes that pydicom can read")
    return InputFileError(path, "is DICOM but holds no image (no Rows/Columns or no SeriesInstanceUID)")


def find_series(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[DicomSeries]:
    """The DICOM image series of a folder, of a list of files, or of one file's folder.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A folder (searched recursively; files that are not DICOM are
        ignored), one DICOM file (its own folder is searched, not
        recursively, and only the file's series is returned), or a list of
        DICOM files (each must be DICOM).

    Returns
    -------
    list of DicomSeries
        Sorted by SeriesNumber, then UID.

    Raises
    ------
    InputFileError
        Missing path, a given file that is not DICOM, a corrupt DICOM file,
        or no DICOM image at all.
    """
    only_uid: str | None = None
    if isinstance(path, (list, tuple)):
        files = [pathlib.Path(p) for p in path]
        if not files:
            raise AdvsegError("no DICOM files given")
        where = _common_folder(files)
        for file in files:
            if not file.is_file():
                raise InputFileError(file, "file not found")
        headers = [read_slice_header(file, force=True) for file in files]
        for file, header in zip(files, headers):
            if header is None:
                raise _no_image(file)
    else:
        where = pathlib.Path(path)
        if not where.exists():
            raise InputFileError(where, "not found")
        if where.is_dir():
            headers = [read_slice_header(file, force=False) for file in _candidate_files(where, recursive=True)]
        else:
            first = read_slice_header(where, force=True)
            if first is None:
                raise _no_image(where)
            only_uid = first.series_uid
            headers = [read_slice_header(file, force=False) if file != where else first
                       for file in _candidate_files(where.parent, recursive=False)]

    groups: dict[str, list[SliceHeader]] = {}
    for header in headers:
        if header is not None and (only_uid is None or header.series_uid == only_uid):
            groups.setdefault(header.series_uid, []).append(header)
    if not groups:
        raise InputFileError(where, "holds no DICOM image files")
    series = [
        DicomSeries(
            uid=uid,
            description=slices[0].description,
            number=slices[0].number,
            modality=slices[0].modality,
            files=tuple(s.path for s in slices),
            where=where,
            _slices=slices,
        )
        for uid, slices in groups.items()
    ]
    series.sort(key=lambda s: (s.number is None, s.number if s.number is not None else 0, s.uid))
    return series


def _common_folder(files: Sequence[pathlib.Path]) -> pathlib.Path:
    try:
        return pathlib.Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    except ValueError:
        return files[0].parent


def choose_series(series: Sequence[DicomSeries], uid: str | None, where: str | os.PathLike) -> DicomSeries:
    """The series with SeriesInstanceUID ``uid``, or the only one when ``uid`` is None.

    Raises
    ------
    SeveralSeriesError
        ``uid`` is None and there are several series (the message lists them).
    InputFileError
        No series has that UID (the message lists those there are).
    """
    if uid is None:
        if len(series) == 1:
            return series[0]
        raise SeveralSeriesError(where, series)
    uid = str(uid).strip()
    for item in series:
        if item.uid == uid:
            return item
    listing = "; ".join(s.label() for s in series)
    raise InputFileError(where, f"holds no DICOM series {uid}; it holds {listing}")
