"""Save docs/coronal.png: a coronal reformat of exported volumes, codes per slice against one code per volume.

    .venv/bin/python scripts/coronal_figure.py [--out PATH] [--seed S] [--row Y] [--z-smooth SIGMA]
    .venv/bin/python scripts/coronal_figure.py --folders BEFORE AFTER [AFTER2 ...]

Without ``--folders`` it runs ``advseg sample`` on the shipped sample three
ways into a scratch folder: fresh latent deviates per slice (``--latent
slice``, before), one set per volume (``--latent volume``, after) and one set
per volume with the fields smoothed along z (``--z-smooth``). Each column of
the figure shows one output folder: the coronal slice (row ``--row`` of the
canonical Y axis, default the middle) of adversarial_hu, the bias field and
the displacement magnitude, superior at the top, at the true aspect ratio,
with the inter-slice discontinuity ratio of each field in its title.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from napari_advseg.attack.sampling import read_sample
from napari_advseg.evaluation.continuity import volume_discontinuity

ROOT = Path(__file__).resolve().parents[1]


def run_sample(out: Path, seed: int, flags: list[str]) -> Path:
    """``advseg sample`` on the shipped sample into ``out``."""
    command = [sys.executable, "-m", "napari_advseg.cli", "sample", "--out", str(out), "--seed", str(seed),
               "--device", "cpu", "--quiet", "--overwrite", *flags]
    subprocess.run(command, check=True)
    return out


def title_of(sidecar: dict) -> str:
    latent = sidecar.get("latent", "slice")
    name = "codes per slice (before)" if latent == "slice" else "one code per volume (after)"
    if sidecar.get("z_smooth"):
        name = f"one code, z-smooth {sidecar['z_smooth']:g}" if latent == "volume" else name + ", z-smooth"
    return name


def figure(folders: list[Path], out: Path, row: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [read_sample(folder) for folder in folders]
    dz, _, dx = samples[0]["spacing"]
    y = samples[0]["adversarial_hu"].shape[1] // 2 if row is None else row
    bias_limit = max(float(np.abs(s["bias"][:, y]).max()) for s in samples) or 1.0
    phi_limit = max(float(np.linalg.norm(s["displacement"][:, y], axis=-1).max()) for s in samples) or 1.0
    fig, axes = plt.subplots(3, len(samples), figsize=(3.4 * len(samples) + 0.8, 9.6), squeeze=False,
                             layout="constrained")
    for col, sample in enumerate(samples):
        figures = volume_discontinuity(sample["displacement"], sample["bias"], sample["slices"])
        panels = [
            (sample["adversarial_hu"][:, y], {"cmap": "gray", "vmin": -150, "vmax": 250}, "adversarial_hu (HU)"),
            (sample["bias"][:, y], {"cmap": "RdBu_r", "vmin": -bias_limit, "vmax": bias_limit},
             f"bias (HU), discontinuity {figures['bias']:.2f}"),
            (np.linalg.norm(sample["displacement"][:, y], axis=-1), {"cmap": "magma", "vmin": 0, "vmax": phi_limit},
             f"|displacement| (px), discontinuity {figures['displacement']:.2f}"),
        ]
        for r, (image, style, label) in enumerate(panels):
            ax = axes[r, col]
            shown = ax.imshow(image, origin="lower", aspect=dz / dx, interpolation="nearest", **style)
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == len(samples) - 1:
                fig.colorbar(shown, ax=axes[r, :], fraction=0.03, pad=0.02)
        axes[0, col].set_title(f"{title_of(sample['sidecar'])}\n\nadversarial_hu (HU)", fontsize=8)
    fig.suptitle(f"Coronal reformat (row {y}; superior at the top) of `advseg sample` outputs", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "coronal.png")
    parser.add_argument("--folders", type=Path, nargs="+", help="`advseg sample` output folders, one per column")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--row", type=int, help="canonical Y row of the coronal slice (default: the middle)")
    parser.add_argument("--z-smooth", type=float, default=1.0, help="sigma of the third column (0: no third column)")
    args = parser.parse_args()
    if args.folders:
        figure(args.folders, args.out, args.row)
    else:
        with tempfile.TemporaryDirectory(prefix="advseg-coronal-") as scratch:
            runs = [(["--latent", "slice"], "before"), (["--latent", "volume"], "after")]
            if args.z_smooth > 0:
                runs.append((["--latent", "volume", "--z-smooth", str(args.z_smooth)], "smoothed"))
            folders = [run_sample(Path(scratch) / name, args.seed, flags) for flags, name in runs]
            figure(folders, args.out, args.row)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
