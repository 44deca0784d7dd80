"""How long opening a DICOM CT series takes: a 512 x 512 x 300 series, and compressed slices.

    .venv/bin/python bench/dicom_open.py                  # writes to a temporary folder, prints the figures
    .venv/bin/python bench/dicom_open.py --slices 60 --compressed 20  # a quick look
    .venv/bin/python bench/dicom_open.py --blank-uids     # series anonymised as research data are

Writes, to a temporary folder that is removed afterwards:

1. an uncompressed series (Explicit VR Little Endian, int16, RescaleIntercept
   -1024) of ``--slices`` axial 512 x 512 slices, and times
   :func:`napari_advseg.io.dicom.load_dicom` on it (``--repeats`` times; the
   files were just written, so they are in the page cache: this is the
   reader's own time, not the disk's), with the header scan
   (:func:`~napari_advseg.io.dicom.find_series`) timed on its own;
2. ``--compressed`` slices (300 by default: the 512 x 512 x 300 JPEG 2000
   series of a PET/CT archive) each as JPEG 2000 Lossless (pydicom's
   encoder with pylibjpeg-openjpeg) and, when imagecodecs is installed, JPEG
   Lossless SV1, and times reading them, to give a decode time per slice.

``--blank-uids`` writes the series as anonymisers leave them: SeriesInstanceUID,
StudyInstanceUID, SOPInstanceUID and SOPClassUID empty (the file meta keeps
its UIDs), so the reader groups the slices by what else they hold.

The image is a smooth body-like phantom with noise (air, fat, soft tissue,
bone), so the compressed sizes are those of a CT-like image, not of noise.
The figures go to stdout; ``--out`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def phantom_slice(k: int, n: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """One axial slice in HU: an ellipse of soft tissue in fat, a spine and noise (int16)."""
    rng = np.random.default_rng(seed + k)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    t = k / max(n - 1, 1)
    body = (x / (0.42 - 0.03 * t)) ** 2 + (y / 0.3) ** 2 < 1
    inner = (x / 0.36) ** 2 + ((y + 0.02) / 0.24) ** 2 < 1
    spine = ((x) / 0.05) ** 2 + ((y - 0.18) / 0.05) ** 2 < 1
    hu = np.full((size, size), -1000.0, np.float32)
    hu[body] = -100.0
    hu[inner] = 40.0 + 30.0 * np.sin(8 * x[inner] + 3 * t)
    hu[spine] = 700.0
    hu += rng.normal(0.0, 12.0, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def write_series(folder: Path, n: int, syntax, size: int = 512, spacing: float = 1.0,
                 blank_uids: bool = False) -> float:
    """Write ``n`` axial slices; returns the seconds it took."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1,
                             generate_uid)

    folder.mkdir(parents=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    start = time.perf_counter()
    for k in range(n):
        hu = phantom_slice(k, n, size)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "bench", 1, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-255.5, -255.5, f"{-300 + k * spacing:.3f}"]
        ds.PixelSpacing = ["0.976", "0.976"]
        ds.SliceThickness = f"{spacing:g}"
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        if syntax == JPEGLosslessSV1:
            import imagecodecs

            stored = (hu.astype(np.int32) + 1024).astype(np.uint16)
            ds.set_pixel_data(stored, photometric_interpretation="MONOCHROME2", bits_stored=12)
            ds.PixelData = encapsulate([bytes(imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1,
                                                                       bitspersample=12))])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        else:
            stored = (hu.astype(np.int32) + 1024).astype(np.int16)
            ds.set_pixel_data(stored, photometric_interpretation="MONOCHROME2", bits_stored=16)
            if syntax == JPEG2000Lossless:
                ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        if blank_uids:
            for name in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
                setattr(ds, name, "")
        ds.save_as(folder / f"IM{k:05d}", enforce_file_format=True)
    return time.perf_counter() - start


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def time_open(folder: Path, repeats: int) -> tuple[list[float], list[float], object]:
    import warnings

    from napari_advseg.io.dicom import find_series, load_dicom

    warnings.simplefilter("ignore")  # the note on blank UIDs, once per open
    scans, opens, volume = [], [], None
    for _ in range(repeats):
        start = time.perf_counter()
        find_series(folder)
        scans.append(time.perf_counter() - start)
        volume = None
        start = time.perf_counter()
        volume = load_dicom(folder)
        opens.append(time.perf_counter() - start)
    return scans, opens, volume


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="slices of the uncompressed series (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512)")
    parser.add_argument("--compressed", type=int, default=300,
                        help="slices of each compressed series (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed opens of each series (default 3)")
    parser.add_argument("--blank-uids", action="store_true",
                        help="blank the Series/Study/SOP Instance and SOP Class UIDs, as anonymisers do")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1

    lines = [f"# DICOM open times (bench/dicom_open.py, {time.strftime('%Y-%m-%d %H:%M')})",
             f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), load average "
             f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; Python {platform.python_version()}, "
             f"pydicom {pydicom.__version__}, numpy {np.__version__}"]

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    for line in lines:
        print(line)
    work = Path(tempfile.mkdtemp(prefix="advseg-dicom-bench-"))
    try:
        runs = [("Explicit VR Little Endian (uncompressed)", ExplicitVRLittleEndian, args.slices),
                ("JPEG 2000 Lossless", JPEG2000Lossless, args.compressed)]
        try:
            import imagecodecs  # noqa: F401

            runs.append(("JPEG Lossless SV1", JPEGLosslessSV1, args.compressed))
        except ImportError:
            say("(imagecodecs is not installed: no JPEG Lossless series)")
        for name, syntax, n in runs:
            folder = work / syntax.name.replace(" ", "_")
            written = write_series(folder, n, syntax, args.size, blank_uids=args.blank_uids)
            scans, opens, volume = time_open(folder, args.repeats)
            best = min(opens)
            blank = ", UIDs blank" if args.blank_uids else ""
            say(f"\n## {name}{blank}: {args.size} x {args.size} x {n} slices, {folder_mb(folder):.1f} MiB on disk "
                f"(written in {written:.1f} s)")
            say(f"open (load_dicom, header scan + pixels + HU + canonical volume): "
                f"{', '.join(f'{t:.2f}' for t in opens)} s; best {best:.2f} s = {1000 * best / n:.1f} ms per slice, "
                f"{volume.hu.nbytes / 2**20 / best:.0f} MiB/s of float32 HU")
            say(f"of which the header scan (find_series): {', '.join(f'{t:.2f}' for t in scans)} s")
            say(f"volume {volume.shape} (Z, Y, X), spacing {tuple(round(s, 3) for s in volume.spacing)} mm, "
                f"HU {volume.hu.min():.0f}..{volume.hu.max():.0f}")
            del volume
            shutil.rmtree(folder)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        say(f"\npeak resident memory of this process: {peak:.0f} MiB "
            f"(the {args.slices}-slice float32 volume alone is "
            f"{args.slices * args.size * args.size * 4 / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
