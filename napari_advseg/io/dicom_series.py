"""Finding DICOM CT series: which files of a folder (or list) are CT images, grouped into series.

:func:`find_series` reads only the headers (no pixel data, with
:func:`napari_advseg.io.dicom_header.read_file_headers`) and groups the
images by SeriesInstanceUID. What a real archive holds besides the CT
volume is sorted out here:

- **blank or missing SeriesInstanceUID** (anonymised research data): the
  images are grouped by what else they hold -- modality, SOP class, series
  number, series description, orientation, size and frame of reference, and
  by acquisition (number and time) where that is what tells apart slices at
  the same position. Such a series gets a stand-in name (``series-3``,
  usable as ``--series``) and :attr:`DicomSeries.uid_missing`; a note says
  what grouping was used.
- **other objects**: series that are not CT (PET, MR, ...), secondary
  captures (screenshots, dose screens), localisers (scouts), colour images,
  images that cannot be placed in the patient, and single images beside a
  multi-slice CT series are *skipped*, as are objects without an image (dose
  reports, presentation states). They are listed, not read, and are no
  error as long as a CT volume remains.
- **layouts**: folders are searched recursively (study/series folders,
  DICOMDIR file sets); a DICOMDIR given as the path stands for its folder;
  files need no ``.dcm`` name and no preamble (:func:`is_dicom_file`);
  multi-frame (Enhanced CT) objects give one image per frame.

:func:`find_series` returns a :class:`SeriesList`: a list of the CT volume
series (sorted by SeriesNumber), with ``skipped`` and ``notes``.
:func:`choose_series` picks one by UID or raises :class:`SeveralSeriesError`
listing them. :mod:`napari_advseg.io.dicom` checks, stacks and reads the
chosen series. Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.io.dicom_geometry import image_problem
from napari_advseg.io.dicom_header import NonImage, SliceHeader, read_file_headers, starts_like_dicom

__all__ = [
    "DICOM_SUFFIXES",
    "DicomNotice",
    "DicomSeries",
    "SeriesList",
    "SeveralSeriesError",
    "choose_series",
    "find_series",
    "is_dicom_file",
    "is_dicom_path",
    "looks_like_dicom",
    "notices_to",
]

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
"""File name endings taken for DICOM without looking inside (files without one are checked for ``DICM``)."""

_MAX_LISTED = 6
"""Skipped objects named one by one in a note; more are counted."""

_GROUPING = "modality, SOP class, series number, series description, orientation, size and frame of reference"


class DicomNotice(UserWarning):
    """A note on how DICOM files were read: UIDs missing and how the images were grouped, objects skipped.

    :func:`napari_advseg.io.dicom.load_dicom` warns with it; the command line
    prints each as one ``advseg: warning:`` line (see :func:`notices_to`).
    """


@contextmanager
def notices_to(say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, send each :class:`DicomNotice` warning to ``say`` (one line of text) instead of
    Python's warning output; other warnings are shown as usual."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(category, type) and issubclass(category, DicomNotice):
            say(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DicomNotice)
        warnings.showwarning = show
        yield


# ---------------------------------------------------------------------------
# What a folder holds
# ---------------------------------------------------------------------------


@dataclass
class DicomSeries:
    """One DICOM series found by :func:`find_series`.

    Attributes
    ----------
    uid : str
        SeriesInstanceUID; when the files have none, a stand-in name
        (``series-<SeriesNumber>``, made unique) that :func:`choose_series`
        accepts like a UID.
    description : str
        SeriesDescription ("" when absent).
    number : int or None
        SeriesNumber.
    modality : str
        Modality of its first file (e.g. ``"CT"``).
    files : tuple of pathlib.Path
        Its files, in the order found (not yet sorted by position); a
        multi-frame file appears once.
    where : pathlib.Path
        The folder (or file) it was found in, named in error messages.
    uid_missing : bool
        The files had no SeriesInstanceUID (``uid`` is a stand-in).
    skipped : str
        Why the series is not read as a CT volume ("" for a CT volume), for
        the entries of :attr:`SeriesList.skipped`.
    sop_class : str
        SOPClassUID of its first file.
    """

    uid: str
    description: str
    number: int | None
    modality: str
    files: tuple[pathlib.Path, ...]
    where: pathlib.Path
    _slices: list[SliceHeader] = field(default_factory=list, repr=False, compare=False)
    uid_missing: bool = False
    skipped: str = ""
    sop_class: str = ""

    @property
    def n_files(self) -> int:
        """Number of files."""
        return len(self.files)

    @property
    def n_images(self) -> int:
        """Number of images (slices): one per single-frame file, one per frame of a multi-frame file."""
        return len(self._slices) if self._slices else len(self.files)

    @property
    def headers(self) -> list[SliceHeader]:
        """The header fields of each image (see :class:`~napari_advseg.io.dicom_header.SliceHeader`)."""
        return list(self._slices)

    def label(self) -> str:
        """One line for lists: ``UID "description" (N slices, CT)``."""
        description = f' "{self.description}"' if self.description else ""
        if self.skipped and not self._slices:  # an object without an image
            count = f"{self.n_files} file{'s' if self.n_files != 1 else ''}"
        else:
            count = f"{self.n_images} slice{'s' if self.n_images != 1 else ''}"
        multi = sum(1 for s in self._slices if s.frame is not None)
        frames = f" in {self.n_files} multi-frame file{'s' if self.n_files != 1 else ''}" if multi else ""
        missing = "; no SeriesInstanceUID" if self.uid_missing else ""
        return f"{self.uid}{description} ({count}{frames}, {self.modality or '?'}{missing})"


class SeriesList(list):
    """What :func:`find_series` found: a list of the CT volume series, plus what was left aside.

    Attributes
    ----------
    skipped : list of DicomSeries
        Series and objects that are not CT volumes, each with its reason in
        :attr:`DicomSeries.skipped` (localisers, other modalities, secondary
        captures, reports, single images beside a volume, ...).
    notes : list of str
        One line each: how images without SeriesInstanceUID were grouped.
    """

    def __init__(self, series=(), skipped=(), notes=()):
        super().__init__(series)
        self.skipped: list[DicomSeries] = list(skipped)
        self.notes: list[str] = list(notes)

    def skipped_note(self) -> str:
        """One line naming what was skipped, or "" when nothing was."""
        return skipped_line(self.skipped)

    def all_notes(self) -> list[str]:
        """The grouping notes, then the skipped line (when something was skipped)."""
        return self.notes + ([self.skipped_note()] if self.skipped else [])


def skipped_line(skipped: Sequence[DicomSeries]) -> str:
    """``skipped N DICOM series/objects (not CT volumes): label: reason; ...`` on one line."""
    if not skipped:
        return ""
    listed = "; ".join(f"{s.label()}: {s.skipped}" for s in skipped[:_MAX_LISTED])
    more = f"; and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
    return f"skipped {len(skipped)} DICOM series or object{'s' if len(skipped) != 1 else ''} that " \
           f"{'are' if len(skipped) != 1 else 'is'} not a CT volume: {listed}{more}"


class SeveralSeriesError(InputFileError):
    """A folder (or list of files) holds several CT series and none was chosen.

    Attributes
    ----------
    series : list of DicomSeries
        What was found, for a caller that offers a choice.
    """

    def __init__(self, path, series: Sequence[DicomSeries]):
        self.series = list(series)
        listing = "; ".join(s.label() for s in self.series)
        skipped = getattr(series, "skipped", [])
        also = f" (and {len(skipped)} skipped, not CT volumes)" if skipped else ""
        super().__init__(
            path,
            f"holds {len(self.series)} DICOM series; choose one (advseg --series UID, or the napari "
            f"Data tab's series list): {listing}{also}",
        )


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether a file starts like DICOM: ``DICM`` after the 128-byte preamble, or a DICOM data set
    written without the preamble (see :func:`~napari_advseg.io.dicom_header.starts_like_dicom`)."""
    try:
        with open(path, "rb") as handle:
            return starts_like_dicom(handle.read(132))
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


def _no_image(path: pathlib.Path, found) -> InputFileError:
    """The error for a given file that holds no DICOM image."""
    if isinstance(found, NonImage):
        return InputFileError(path, f"is DICOM but holds no image ({found.sop_class_name})")
    return InputFileError(path, "not a DICOM file: no DICM marker and no image attributes that pydicom can read")


# ---------------------------------------------------------------------------
# Grouping and sorting out
# ---------------------------------------------------------------------------


def _skip_reason(slices: Sequence[SliceHeader]) -> tuple[pathlib.Path, str] | None:
    """Why a group of images is not a CT volume: not CT, a secondary capture, a localiser, unplaceable."""
    first = slices[0]
    if first.modality.upper() == "CT":
        name = first.sop_class_name
        if "Secondary Capture" in name:
            return first.path, f"a secondary capture ({name}), not a CT acquisition"
        if any("LOCALIZER" in s.image_type for s in slices):
            return first.path, "a localizer (scout) image, not a CT volume"
    return image_problem(slices)


def _group_key(s: SliceHeader) -> tuple:
    localizer = "LOCALIZER" in s.image_type  # a scout filed in the axial series is set apart from it
    if not s.uid_missing:
        return ("uid", s.series_uid, localizer)
    orientation = None if s.orientation is None else tuple(np.round(s.orientation, 3))
    return ("no uid", s.modality, s.sop_class, s.number, s.description, orientation, s.rows, s.columns,
            s.frame_of_reference, localizer)


def _has_duplicates(slices: Sequence[SliceHeader]) -> bool:
    placed = [s for s in slices if s.position is not None and s.orientation is not None]
    if len(placed) < 2:
        return False
    normal = np.cross(placed[0].orientation[:3], placed[0].orientation[3:])
    along = np.sort([float(s.position @ normal) for s in placed])
    return bool(np.any(np.diff(along) < 0.01))


def _split_by_acquisition(slices: list[SliceHeader]) -> list[list[SliceHeader]] | None:
    """Images without UID that share positions, split by acquisition when that leaves none shared."""
    groups: dict[str, list[SliceHeader]] = {}
    for s in slices:
        groups.setdefault(s.acquisition, []).append(s)
    if len(groups) < 2 or any(_has_duplicates(group) for group in groups.values()):
        return None
    return list(groups.values())


def _stand_in_uids(groups: list[list[SliceHeader]]) -> list[str]:
    """``series-<number>`` (``no-uid`` without a number) for each group without UID, made unique with
    ``-2``, ``-3``, ..."""
    names: list[str] = []
    for slices in groups:
        base = f"series-{slices[0].number}" if slices[0].number is not None else "no-uid"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _make_series(uid: str, slices: list[SliceHeader], where: pathlib.Path, uid_missing: bool = False,
                 skipped: str = "") -> DicomSeries:
    files = tuple(dict.fromkeys(s.path for s in slices))
    first = slices[0]
    return DicomSeries(uid=uid, description=first.description, number=first.number, modality=first.modality,
                       files=files, where=where, _slices=list(slices), uid_missing=uid_missing, skipped=skipped,
                       sop_class=first.sop_class)


def _non_image_series(objects: Sequence[NonImage], where: pathlib.Path) -> list[DicomSeries]:
    """Objects without an image, one entry per series and SOP class (DICOMDIR indexes left out)."""
    groups: dict[tuple, list[NonImage]] = {}
    for item in objects:
        if not item.directory:
            groups.setdefault((item.series_uid, item.sop_class), []).append(item)
    return [DicomSeries(uid=items[0].series_uid or "(no UID)", description=items[0].description,
                        number=items[0].number, modality=items[0].modality,
                        files=tuple(i.path for i in items), where=where, uid_missing=not items[0].series_uid,
                        skipped=f"no image ({items[0].sop_class_name})", sop_class=items[0].sop_class)
            for items in groups.values()]


def _sort_key(s: DicomSeries):
    return (s.number is None, s.number if s.number is not None else 0, s.uid)


def _sort_out(images: list[SliceHeader], objects: list[NonImage], where: pathlib.Path,
              only: pathlib.Path | None = None) -> SeriesList:
    """Group the images into series, set aside what is not a CT volume; ``only``: just that file's series."""
    grouped: dict[tuple, list[SliceHeader]] = {}
    for s in images:
        grouped.setdefault(_group_key(s), []).append(s)
    with_uid: list[tuple[str, list[SliceHeader]]] = []
    without: list[list[SliceHeader]] = []
    split = False
    for key, slices in grouped.items():
        if key[0] == "uid":
            with_uid.append((key[1], slices))
            continue
        parts = _split_by_acquisition(slices) if _has_duplicates(slices) else None
        split = split or parts is not None
        without.extend(parts or [slices])
    notes = []
    if without:
        n_files = len({s.path for group in without for s in group})
        notes.append(f"{where}: {n_files} DICOM image file{'s' if n_files != 1 else ''} without "
                     f"SeriesInstanceUID (blank or missing), grouped into {len(without)} series by {_GROUPING}"
                     + (", and by acquisition number and time" if split else ""))
    all_series = [_make_series(uid, slices, where) for uid, slices in with_uid]
    all_series += [_make_series(uid, slices, where, uid_missing=True)
                   for uid, slices in zip(_stand_in_uids(without), without)]
    if only is not None:
        all_series = [s for s in all_series if only in s.files]
        objects = []
    all_series.sort(key=_sort_key)

    volumes, skipped = [], []
    for series in all_series:
        reason = _skip_reason(series._slices)
        if reason is None:
            volumes.append(series)
        else:
            series.skipped = reason[1]
            skipped.append(series)
    if any(s.n_images > 1 for s in volumes):
        for series in [s for s in volumes if s.n_images == 1]:
            series.skipped = "a single image beside the multi-slice CT series, not a volume"
            volumes.remove(series)
            skipped.append(series)
    skipped += _non_image_series(objects, where)
    found = SeriesList(volumes, skipped, notes)
    if not volumes:
        raise _no_volume(where, found, bool(images))
    return found


def _no_volume(where: pathlib.Path, found: SeriesList, any_image: bool) -> InputFileError:
    """The error when no CT volume remains: the one series' own problem, or the list of what was skipped."""
    images = [s for s in found.skipped if s._slices]
    if len(images) == 1:
        reason = _skip_reason(images[0]._slices)
        return InputFileError(reason[0], reason[1])
    if not any_image:
        others = f": {found.skipped_note()}" if found.skipped else ""
        return InputFileError(where, f"holds no DICOM image files{others}")
    return InputFileError(where, f"holds no CT volume; {found.skipped_note()}")


def find_series(path: str | os.PathLike | Sequence[str | os.PathLike]) -> SeriesList:
    """The DICOM CT series of a folder, of a list of files, or of one file's folder.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A folder (searched recursively; files that are not DICOM are
        ignored), a DICOMDIR (its folder is searched), one DICOM file (its
        own folder is searched, not recursively, and only the file's series
        is returned), or a list of DICOM files (each must be DICOM).

    Returns
    -------
    SeriesList
        The CT volume series, sorted by SeriesNumber, then UID; with
        ``skipped`` (what is not a CT volume, and why) and ``notes``.

    Raises
    ------
    InputFileError
        Missing path, a given file that is not DICOM, a corrupt DICOM file,
        no DICOM image at all, or no CT volume among them (the message says
        what each series is).
    """
    images: list[SliceHeader] = []
    objects: list[NonImage] = []
    only: pathlib.Path | None = None

    def add(found) -> None:
        if isinstance(found, list):
            images.extend(found)
        elif isinstance(found, NonImage):
            objects.append(found)

    if isinstance(path, (list, tuple)):
        files = [pathlib.Path(p) for p in path]
        if not files:
            raise AdvsegError("no DICOM files given")
        where = _common_folder(files)
        for file in files:
            if not file.is_file():
                raise InputFileError(file, "file not found")
        for file in files:
            found = read_file_headers(file, force=True)
            if not isinstance(found, list):
                raise _no_image(file, found)
            add(found)
    else:
        where = pathlib.Path(path)
        if not where.exists():
            raise InputFileError(where, "not found")
        first = None if where.is_dir() else read_file_headers(where, force=True)
        if isinstance(first, NonImage) and first.directory:
            where = where.parent  # a DICOMDIR stands for its file set's folder
        if where.is_dir():
            for file in _candidate_files(where, recursive=True):
                add(read_file_headers(file, force=False))
        else:
            if not isinstance(first, list):
                raise _no_image(where, first)
            only = where
            for file in _candidate_files(where.parent, recursive=False):
                add(first if file == where else read_file_headers(file, force=False))
    return _sort_out(images, objects, where, only)


def _common_folder(files: Sequence[pathlib.Path]) -> pathlib.Path:
    try:
        return pathlib.Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    except ValueError:
        return files[0].parent


def choose_series(series: Sequence[DicomSeries], uid: str | None, where: str | os.PathLike) -> DicomSeries:
    """The series with SeriesInstanceUID (or stand-in name) ``uid``, or the only one when ``uid`` is None.

    A skipped series of a :class:`SeriesList` can be chosen by its UID too
    (it is then read, or refused, as a series of its own).

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
    for item in list(series) + [s for s in getattr(series, "skipped", []) if s._slices]:
        if item.uid == uid:
            return item
    listing = "; ".join(s.label() for s in series)
    raise InputFileError(where, f"holds no DICOM series {uid}; it holds {listing}")
