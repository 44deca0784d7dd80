"""How realistic are the attacks' fields? Bias-field spectrum and deformation Jacobian, beside random smooth fields.

On the shipped sample (phantom subject 0, the shipped U-Net and generator;
neither network saw subject 0), for each rho level: the generator's fields
(random codes, scaled to the level with ``scale_to_rho``, as
``generator_attack`` does), random smooth fields and optimised smooth fields
(20 steps), the two baselines on the generator's control grid; then the
generator at its own rho, with random codes and with the one latent number
z_b[0] at +3 SD (the others at the encoder's mean). Every method runs
through ``evaluate_baseline``, the counting loop of Table 1, so its report's
``realism`` figures are the ones printed (:mod:`napari_advseg.attack.realism`):

- ``b stripe``: the bias field's strongest single wave of wavelength under
  32 px, as a share of its power (mean over slices); a stripe pattern at the
  control grid's period raises it, smooth shading does not;
- ``b < 32 px``: the bias field's share of power at wavelengths under 32 px;
- ``det J min`` / ``max``: the range of the deformation's Jacobian determinant.

Each figure is set against the random smooth fields of the same grid at the
same rho: the range (min..max) of their per-slice figures over slices and
draws. ``in range`` says whether the method's figure lies in it (``low`` /
``high`` where not), with the share of the method's own slices whose figure
does. Also writes ``docs/realism.png``: slice 23's bias fields (generator at
z_b[0] +3 SD, random and optimised fields at the same rho) and their power
spectra.

    OMP_NUM_THREADS=1 .venv/bin/python bench/realism.py           # about 3 minutes on one thread
    OMP_NUM_THREADS=1 .venv/bin/python bench/realism.py --quick   # seconds: a check that it runs (CI)

Results: ``bench/results/realism.md`` and ``.json`` (``realism_quick.*`` with
``--quick``, and its picture beside them instead of in ``docs/``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIGURE_SLICE = 23
SPECTRUM_ZOOM = 0.25
"""The spectra are shown up to this frequency (cycles per pixel, a 4 px wavelength)."""
SETTINGS = {  # (full, quick)
    "rhos": ((0.04, 0.06, 0.08), (0.06,)),
    "slices": (16, 2),
    "draws": (4, 1),
    "opt_steps": (20, 2),
}
FIGURES = ("bias_stripe_share", "bias_short_share", "jacobian_min", "jacobian_max")


def setting(args: argparse.Namespace, name: str):
    return SETTINGS[name][1 if args.quick else 0]


def say(text: str) -> None:
    print(text, flush=True)


def fixed_code_attack(generator, config, eps_phi, eps_b):
    """The generator with the same latent deviates for every slice, with the baselines' signature."""
    import functools

    from napari_advseg.attack.baselines.registry import generator_attack

    attack = functools.partial(generator_attack, generator=generator, config=config, codes=(eps_phi, eps_b))
    attack.__name__ = "generator (fixed code)"  # type: ignore[attr-defined]
    return attack


def recorded(attack, tally):
    """``attack`` that also hands each batch's fields to ``tally`` (per-slice figures for the ranges)."""
    from napari_advseg.attack.baselines.registry import ATTACKS

    fn = ATTACKS[attack] if isinstance(attack, str) else attack
    name = attack if isinstance(attack, str) else getattr(attack, "__name__", "attack")

    def run(x, y, target, rho, rng, **options):
        result = fn(x, y, target, rho, rng, **options)
        tally.add(result.displacement, result.bias)
        return result

    run.__name__ = name
    return run


def per_slice(tally) -> dict[str, list[float]]:
    return {"bias_stripe_share": list(tally.stripe_shares), "bias_short_share": list(tally.short_shares),
            "jacobian_min": list(tally.jacobian_mins), "jacobian_max": list(tally.jacobian_maxs)}


def measure_method(label, attack, rho, samples, options, target, volumes, seed) -> dict:
    from napari_advseg.attack.realism import RealismTally
    from napari_advseg.evaluation.baselines import evaluate_baseline

    tally = RealismTally()
    start = time.perf_counter()
    report = evaluate_baseline(recorded(attack, tally), target, volumes, rho, samples=samples, seed=seed,
                               options=options)
    seconds = time.perf_counter() - start
    if report["realism"] != tally.report():  # the report's figures are the ones of these fields
        raise AssertionError(f"{label}: the report's realism figures differ from the fields' own")
    return {"method": label, "rho_level": rho, "rho": report["rho"], "mean_drop": report["mean_drop"],
            "realism": report["realism"], "per_slice": per_slice(tally), "samples": samples,
            "seconds": seconds, "options": options}


def compare(entry: dict, reference: dict) -> dict:
    """Where each of ``entry``'s figures lies against ``reference``'s per-slice range."""
    out = {}
    for key in FIGURES:
        values = reference["per_slice"][key]
        value = entry["realism"][key]
        if value is None or not values:
            out[key] = {"range": None, "verdict": "n/a", "slices_in_range": None}
            continue
        low, high = min(values), max(values)
        verdict = "yes" if low <= value <= high else ("low" if value < low else "high")
        own = entry["per_slice"][key]
        inside = sum(low <= v <= high for v in own) / len(own) if own else None
        out[key] = {"range": [low, high], "verdict": verdict, "slices_in_range": inside}
    return out


def measure(args: argparse.Namespace) -> dict:
    import torch

    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target
    from napari_advseg.attack.baselines.registry import generator_attack

    torch.set_num_threads(args.threads)
    target = load_target(sample_file("target"), "cpu")
    generator, config, _ = load_generator(sample_file("generator"), "cpu")
    generator.eval()
    case = load_case(sample_file("ct"), sample_file("labels"), target.normalisation, target.class_names)
    organ_slices = [z for z in range(case.volume.n_slices) if (case.labels[z] > 0).any()]
    count = min(setting(args, "slices"), len(organ_slices))
    chosen = sorted({organ_slices[int(round(k))] for k in np.linspace(0, len(organ_slices) - 1, count)})
    volumes = [(case.images[chosen], case.labels[chosen])]
    spacing = config.control_spacing
    grid = {"control_spacing": spacing}
    draws, opt_steps = setting(args, "draws"), setting(args, "opt_steps")
    gen_random = functools.partial(generator_attack, generator=generator, config=config)
    gen_random.__name__ = "generator"  # type: ignore[attr-defined]
    eps_b = torch.zeros(1, config.latent_dim)
    eps_b[0, 0] = 3.0
    gen_fixed = fixed_code_attack(generator, config, torch.zeros(1, config.latent_dim), eps_b)

    def run(label, attack, rho, samples, options):
        entry = measure_method(label, attack, rho, samples, options, target, volumes, args.seed)
        r = entry["realism"]
        say(f"  {label:<34} rho {entry['rho']:.3f}  drop {100 * entry['mean_drop']:5.1f} %  "
            f"b stripe {fmt_share(r['bias_stripe_share'])}  b short {fmt_share(r['bias_short_share'])}  "
            f"det J {fmt_num(r['jacobian_min'])}..{fmt_num(r['jacobian_max'])}  ({entry['seconds']:.0f} s)")
        return entry

    start = time.perf_counter()
    groups = []
    say(f"shipped sample, slices {chosen}, control grid {spacing} px, {draws} draw(s) per slice")
    for rho in setting(args, "rhos"):
        say(f"rho {rho:g}")
        reference = run("random smooth fields", "random_fields", rho, draws, grid)
        rows = [run("generator", gen_random, rho, draws, {}), reference,
                run(f"optimised fields, {opt_steps} steps", "optimised_fields_1", rho, 1, {**grid, "steps": opt_steps})]
        groups.append({"rho_level": rho, "reference": reference, "rows": rows})
    say("the generator's own rho")
    for label, attack, samples in (("generator (its own rho)", gen_random, draws),
                                   ("generator, z_b[0] +3 SD (its own rho)", gen_fixed, 1)):
        row = run(label, attack, None, samples, {})
        level = round(row["rho"], 3)
        reference = run(f"random smooth fields at {level:.3f}", "random_fields", level, draws, grid)
        groups.append({"rho_level": None, "reference": reference, "rows": [row]})
    for group in groups:
        for row in group["rows"]:
            row["against_random"] = compare(row, group["reference"])
    seconds = time.perf_counter() - start
    return {"command": "OMP_NUM_THREADS=1 .venv/bin/python bench/realism.py" + (" --quick" if args.quick else ""),
            "generator": str(sample_file("generator")), "target": str(sample_file("target")),
            "ct": str(sample_file("ct")), "slices": chosen, "control_spacing": spacing, "draws": draws,
            "optimised_steps": opt_steps, "seed": args.seed, "threads": args.threads, "seconds": seconds,
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "processor": platform.processor() or platform.machine()},
            "groups": groups}


def fmt_share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def fmt_num(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def verdict_cell(check: dict) -> str:
    if check["verdict"] == "n/a":
        return "n/a"
    return f"{check['verdict']} ({100 * check['slices_in_range']:.0f} %)"


def table(result: dict) -> str:
    lines = ["| method | rho level | rho | mean drop | b stripe | b < 32 px | det J min | det J max "
             "| b stripe in range | b < 32 px in range | det J min in range | det J max in range |",
             "|" + " --- |" * 12]
    for group in result["groups"]:
        reference = group["reference"]
        rows = group["rows"] if group["rho_level"] is not None else group["rows"] + [reference]
        for row in rows:
            r = row["realism"]
            checks = row.get("against_random") or compare(row, reference)
            level = "own" if group["rho_level"] is None else f"{group['rho_level']:g}"
            lines.append(f"| {row['method']} | {level} | {row['rho']:.3f} | {100 * row['mean_drop']:.1f} % | "
                         f"{fmt_share(r['bias_stripe_share'])} | {fmt_share(r['bias_short_share'])} | "
                         f"{fmt_num(r['jacobian_min'])} | {fmt_num(r['jacobian_max'])} | "
                         + " | ".join(verdict_cell(checks[key]) for key in FIGURES) + " |")
    return "\n".join(lines)


def ranges(result: dict) -> str:
    lines = []
    for group in result["groups"]:
        ref = group["reference"]["per_slice"]
        spans = []
        for key, label, fmt in (("bias_stripe_share", "b stripe", fmt_share), ("bias_short_share", "b < 32 px", fmt_share),
                                ("jacobian_min", "det J min", fmt_num), ("jacobian_max", "det J max", fmt_num)):
            values = ref[key]
            spans.append(f"{label} {fmt(min(values))}..{fmt(max(values))}" if values else f"{label} n/a")
        spans = ", ".join(spans)
        lines.append(f"- {group['reference']['method']} (rho {group['reference']['rho']:.3f}): {spans}")
    return "\n".join(lines)


def markdown(result: dict, figure: str | None) -> str:
    text = [
        "# Realism of the fields on the shipped sample", "",
        f"`{result['command']}` ({result['seconds']:.0f} s, {result['threads']} thread(s)); slices "
        f"{result['slices']} of phantom subject 0; control grid {result['control_spacing']} px for the "
        f"baselines, as the generator's; {result['draws']} draw(s) per slice for the generator and the random "
        f"fields, {result['optimised_steps']}-step optimised fields one per slice; seed {result['seed']}.", "",
        "b stripe: the bias field's strongest single wave of wavelength under 32 px as a share of its power; "
        "b < 32 px: its share of power "
        "at wavelengths under 32 px (both means over slices); det J: the smallest and largest Jacobian "
        "determinant of the deformation. In range: the figure against the range (min..max) of the random "
        "smooth fields' per-slice figures at the same rho (yes / low / high), with the share of the method's "
        "own slices inside that range. Mean drop: the mean over organs of the relative Dice drop.", "",
        table(result), "", "Ranges of the random smooth fields (per slice and draw):", "", ranges(result)]
    if figure:
        text += ["", f"Picture: `{figure}`."]
    return "\n".join(text) + "\n"


def strongest_wavelength(bias) -> float:
    """Wavelength (px) of the strongest non-DC bin of a one-slice bias field's power spectrum."""
    from napari_advseg.attack.realism import power_spectrum

    power = power_spectrum(bias)[0].numpy()
    power[0, 0] = 0.0
    ky, kx = np.unravel_index(int(np.argmax(power)), power.shape)
    fy, fx = np.fft.fftfreq(power.shape[0])[ky], np.fft.fftfreq(power.shape[1])[kx]
    return float(1.0 / np.hypot(fy, fx))


def draw_figure(args: argparse.Namespace, path: Path) -> dict:
    """Slice 23's bias fields (HU) and their power spectra: generator at z_b[0] +3 SD, random and optimised
    fields at the generator's rho on that slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields, random_smooth_fields
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.attack.fields import perceptibility_per_slice
    from napari_advseg.attack.realism import SHORT_WAVELENGTH_PX, bias_spectrum_shares, power_spectrum
    from napari_advseg.data.cases import load_case
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target

    target = load_target(sample_file("target"), "cpu")
    generator, config, _ = load_generator(sample_file("generator"), "cpu")
    generator.eval()
    case = load_case(sample_file("ct"), sample_file("labels"), target.normalisation, target.class_names)
    x = torch.as_tensor(case.images[FIGURE_SLICE:FIGURE_SLICE + 1])[:, None]
    y = torch.as_tensor(case.labels[FIGURE_SLICE:FIGURE_SLICE + 1]).long()
    eps_b = torch.zeros(1, config.latent_dim)
    eps_b[0, 0] = 3.0
    result = fixed_code_attack(generator, config, torch.zeros(1, config.latent_dim), eps_b)(x, y, target, None, None)
    rho = float(perceptibility_per_slice(result.adversarial, x)[0])
    rng = torch.Generator().manual_seed(args.seed)
    grid = config.control_spacing
    fields = [("generator, z_b[0] +3 SD", result.bias),
              ("random smooth fields", random_smooth_fields(x, y, rho, rng, control_spacing=grid).bias),
              (f"optimised fields, {setting(args, 'opt_steps')} steps",
               optimised_smooth_fields(x, y, target, rho, setting(args, "opt_steps"), rng, control_spacing=grid).bias)]
    scale = float(case.scale.scale)  # normalised -> HU (additive bias)
    hu = [(label, b[0, 0].numpy() * scale) for label, b in fields]
    limit = max(float(np.abs(b).max()) for _, b in hu)
    spectra = [np.fft.fftshift(power_spectrum(b)[0].numpy()) for _, b in fields]
    spectra = [s / max(s.sum(), 1e-30) for s in spectra]
    floor = 1e-7
    size = spectra[0].shape
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.2), constrained_layout=True)
    panels = []
    for k, ((label, b), spectrum, (_, raw)) in enumerate(zip(hu, spectra, fields)):
        (stripe, short), = bias_spectrum_shares(raw)
        wavelength = strongest_wavelength(raw)
        panels.append({"field": label, "bias_stripe_share": stripe, "bias_short_share": short,
                       "strongest_wavelength_px": wavelength})
        say(f"slice {FIGURE_SLICE}, {label}: b stripe {100 * stripe:.1f} %, b < 32 px {100 * short:.1f} %, "
            f"strongest wave {wavelength:.1f} px")
        image = axes[0, k].imshow(b, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, k].set_title(f"{label}\nb stripe {100 * stripe:.1f} % (strongest wave {wavelength:.0f} px)\n"
                             f"b < 32 px {100 * short:.1f} %", fontsize=9)
        power = axes[1, k].imshow(np.log10(np.maximum(spectrum, floor)), cmap="magma", vmin=math.log10(floor),
                                  vmax=0, extent=(-0.5, 0.5, 0.5, -0.5))
        circle = plt.Circle((0, 0), 1 / SHORT_WAVELENGTH_PX, fill=False, color="cyan", lw=0.8)
        axes[1, k].add_patch(circle)
        axes[1, k].set_xlim(-SPECTRUM_ZOOM, SPECTRUM_ZOOM)
        axes[1, k].set_ylim(SPECTRUM_ZOOM, -SPECTRUM_ZOOM)
        axes[1, k].set_xlabel("f_x (cycles / px)")
        axes[1, k].set_ylabel("f_y (cycles / px)")
        axes[1, k].set_title("power spectrum (circle: 32 px wavelength)", fontsize=9)
        for a in axes[:, k]:
            a.tick_params(labelsize=7)
        axes[0, k].set_xticks([])
        axes[0, k].set_yticks([])
    fig.colorbar(image, ax=axes[0, :], shrink=0.8, label="bias (HU)")
    fig.colorbar(power, ax=axes[1, :], shrink=0.8, label="log10 share of power")
    fig.suptitle(f"Bias fields on slice {FIGURE_SLICE} of the shipped sample at rho {rho:.3f} "
                 f"(control grid {grid} px, {size[0]} x {size[1]} px)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return {"slice": FIGURE_SLICE, "rho": rho, "path": str(path), "panels": panels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="folder of the results")
    parser.add_argument("--figure", type=Path, help="the picture (default docs/realism.png; with --quick, "
                                                    "realism_quick.png in --results)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 slices, one rho level, 2 steps: a check that it runs")
    args = parser.parse_args(argv)
    stem = "realism_quick" if args.quick else "realism"
    figure = args.figure or (args.results / f"{stem}.png" if args.quick else ROOT / "docs" / "realism.png")
    result = measure(args)
    result["figure"] = draw_figure(args, figure)
    try:
        shown = str(figure.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(figure)
    result["figure"]["path"] = shown
    text = table(result)
    say("")
    say(text)
    say("")
    say(ranges(result))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.md").write_text(markdown(result, shown))
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=2))
    say(f"wrote {args.results / (stem + '.md')}, {args.results / (stem + '.json')} and {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
