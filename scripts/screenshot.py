"""Save docs/screenshot.png: napari with the sample phantom, the attack widget and one explored slice.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [--out PATH]
        [--compare] [--view coronal] [--apply] [--show "displacement (mm)" ...] [--mean]

Builds the scene of ``python -m napari_advseg.widgets.demo`` in a real window, lets
Qt and the canvas settle, and saves the whole window (canvas and dock).
``--compare`` shows the Explore tab's compare view, ``--view`` a coronal or
sagittal reformat, ``--apply`` applies the code to the whole volume first,
``--show`` switches overlays on by their layer names, ``--mean`` leaves every
slider at the encoder's mean. The README's images:

    scripts/screenshot.py                                   # docs/screenshot.png
    scripts/screenshot.py --compare --show "label changes" --out docs/compare.png
    scripts/screenshot.py --apply --view coronal --show "bias field (HU)" --out docs/coronal_view.png
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def settle(app, seconds: float) -> None:
    """Process Qt events for a while (layers drawn, background renders shown)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--tab", default="Explore", help="the widget's tab to show")
    parser.add_argument("--compare", action="store_true", help="the compare view (before | after)")
    parser.add_argument("--view", choices=("axial", "coronal", "sagittal"), default="axial")
    parser.add_argument("--apply", action="store_true", help="apply the code to the whole volume first")
    parser.add_argument("--show", action="append", default=[], help="an overlay to switch on (its layer name)")
    parser.add_argument("--hide", action="append", default=[], help="an overlay to switch off (its layer name)")
    parser.add_argument("--mean", action="store_true", help="every slider at 0 SD (the encoder's mean)")
    args = parser.parse_args()

    # napari's own start-up warnings (e.g. about the Qt backend) would cover the canvas
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_advseg.widgets.demo import build_scene

    viewer = napari.Viewer(title="napari-advseg", show=True)
    viewer.window.resize(args.width, args.height)
    app = QApplication.instance()
    settle(app, 0.5)
    widget = build_scene(viewer)
    explore = widget.explore
    if not args.mean:  # a visible attack: a few sliders away from the encoder's mean
        explore.phi_sliders.set_eps([1.5, -1.0, 0.8, 0.0, -0.6, 1.2, 0.0, 0.4][: len(explore.phi_sliders.sliders)])
        explore.bias_sliders.set_eps([0.8, 0.0, -1.2, 0.5, 0.0, 0.0, 0.9, 0.0][: len(explore.bias_sliders.sliders)])
    explore.render_now()
    for name in args.show:
        explore.set_overlay(name, True)
    for name in args.hide:
        explore.set_overlay(name, False)
    if args.apply:
        explore.volume.apply()
        deadline = time.monotonic() + 300
        while explore.volume.job is not None and time.monotonic() < deadline:
            settle(app, 0.1)
    if args.compare:
        explore.view_row.compare.setChecked(True)
    explore.orientation.show(args.view)
    settle(app, 1.0)
    viewer.reset_view()  # fitted once the layout (compare view, reformat) is on the canvas
    for index in range(widget.tabs.count()):
        if widget.tabs.tabText(index) == args.tab:
            widget.tabs.setCurrentIndex(index)
    viewer.reset_view()
    settle(app, 1.5)
    deadline = time.monotonic() + 120  # the sliders' effect labels are measured in the background
    while (explore.effects.busy or explore.effects.pending is not None) and time.monotonic() < deadline:
        settle(app, 0.1)
    settle(app, 0.5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(args.out), canvas_only=False, flash=False)
    print(f"saved {args.out}")
    widget.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
