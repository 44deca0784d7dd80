"""One formula from generator output to HU: what is exported is what the network saw.

The target here is an intensity-band network: each class wins in its own band
of normalised intensity, so any difference between the image the network was
scored on and the exported HU (re-normalised as the target expects) changes
the segmentation. Its output is per-pixel, so batch sizes cannot blur the
comparison.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.attack.apply import adversarial_hu, attack_volume, input_range, run_attack_volume
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.explore import SliceExplorer
from napari_advseg.attack.realism import RealismTally
from napari_advseg.attack.sampling import read_sample, sample_volume
from napari_advseg.data.cases import make_case
from napari_advseg.data.phantom import make_phantom
from napari_advseg.data.intensity import IntensityScale
from napari_advseg.io.geometry import volume_from_array
from napari_advseg.io.labels import check_labels
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target

NORMALISATIONS = {
    "zscore": ({"mode": "zscore"}, (-1.5, -0.5, 0.0, 0.4, 0.8, 1.5)),
    "window": ({"mode": "window", "window": [-200.0, 300.0]}, (-1.0, -0.6, -0.2, 0.2, 0.6, 1.0)),
}


class IntensityBands(nn.Module):
    """Logit of class c = -((x - centre_c) / width)^2: class c wins near its centre."""

    def __init__(self, centres, width: float = 0.2):
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32).view(1, -1, 1, 1))
        self.width = width

    def forward(self, x):
        return -((x - self.centres) / self.width) ** 2


def _setup(normalisation_key: str, bias_mode: str, b_max: float = 0.6):
    normalisation, centres = NORMALISATIONS[normalisation_key]
    target = make_target(IntensityBands(centres), normalisation=normalisation, device="cpu")
    phantom = make_phantom(2, (5, 64, 64))
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    labels = check_labels(phantom.labels, volume, phantom.class_names)
    case = make_case(volume, labels, target.normalisation)
    # strong raw fields, the deformation used directly: the test needs a visible attack
    config = AttackConfig(bias_mode=bias_mode, b_max=b_max, phi_max=3.0, latent_dim=4, phi_rho_max=None,
                          bias_rho_max=None, phi_edge_gate=None, phi_response="linear", phi_integration="direct")
    torch.manual_seed(1)
    generator = AttackGenerator(config).eval()
    with torch.no_grad():  # an untrained G decodes near-zero fields: give it strong, varied ones
        for decoder in (generator.decoder_phi, generator.decoder_b):
            for p in decoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return target, case, config, generator


@pytest.mark.parametrize("normalisation_key", ["zscore", "window"])
@pytest.mark.parametrize("bias_mode", ["additive", "multiplicative"])
def test_exported_hu_gives_the_exported_segmentation_back(tmp_path, normalisation_key, bias_mode):
    target, case, config, generator = _setup(normalisation_key, bias_mode)
    sidecar = sample_volume(generator, config, target, case, tmp_path, seed=3, slices=[1, 2, 3])
    hu = load_ct(tmp_path / "adversarial_hu.nii.gz").hu
    exported_seg = load_labels(tmp_path / "adversarial_seg.nii.gz", load_ct(tmp_path / "adversarial_hu.nii.gz"))
    scale = IntensityScale.from_dict(sidecar["intensity_scale"])
    with torch.no_grad():
        again = target(torch.as_tensor(scale.apply(hu))[:, None]).argmax(dim=1).numpy()
    attacked = [1, 2, 3]
    # the attack changed the image the network sees (else this test would prove nothing)
    assert np.abs(hu[attacked] - case.volume.hu[attacked]).max() > 10.0
    changed = (again[attacked] != target(torch.as_tensor(case.images[attacked])[:, None]).argmax(1).numpy())
    assert changed.mean() > 0.01
    assert np.array_equal(again[attacked], exported_seg[attacked])
    # slices left out keep the CT exactly
    assert np.array_equal(hu[[0, 4]], case.volume.hu[[0, 4]].astype(np.float32))
    # the exported rho is the rho of the exported image, as the target sees it
    x, x_adv = case.images[attacked], scale.apply(hu[attacked])
    rho = np.mean([np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(x_adv, x)])
    assert sidecar["rho"] == pytest.approx(rho, rel=1e-4)
    assert json.loads((tmp_path / "sample.json").read_text())["intensity_scale"] == sidecar["intensity_scale"]
    # the realism figures are those of the written fields (bias shares do not depend on its units)
    written = read_sample(tmp_path)
    realism = RealismTally()
    bias = written["bias"][attacked] if bias_mode == "additive" else np.log(written["bias"][attacked])
    realism.add(np.moveaxis(written["displacement"][attacked], -1, 1), bias[:, None])
    assert sidecar["realism"]["bias_slices"] == 3 and sidecar["realism"]["deformation_slices"] == 3
    for key, value in realism.report().items():
        assert sidecar["realism"][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key


def test_window_target_sees_no_more_than_its_window():
    assert input_range({"mode": "zscore"}) is None
    assert input_range({"mode": "window", "window": [-200.0, 300.0]}) == (-1.0, 1.0)
    target, case, config, generator = _setup("window", "additive")
    result = run_attack_volume(attack_volume(generator, config, target, case, eps_phi=np.full(4, 1.0),
                                             eps_b=np.full(4, -1.0)))
    x_seen = case.scale.apply(result.adversarial_hu)
    assert x_seen.min() >= -1.0 and x_seen.max() <= 1.0
    # bone and air beyond the window keep their HU where the attack leaves them at the bound
    assert result.adversarial_hu.max() > 300.0 + 1.0 and result.adversarial_hu.min() < -200.0 - 1.0


def test_adversarial_hu_keeps_tissue_beyond_the_bound_exactly():
    scale = IntensityScale("window", offset=50.0, scale=250.0, clip_low=-200.0, clip_high=300.0)
    hu = np.array([[[1000.0, 100.0, -900.0]]], np.float32)
    x_adv = np.array([[[1.0, 0.2, -1.0]]], np.float32)
    out = adversarial_hu(hu, x_adv, None, scale)
    assert out.tolist() == [[[1000.0, 100.0, -900.0]]]
    assert np.array_equal(scale.apply(out), x_adv)
    # a bright pixel pulled down by the bias is shown as what the network saw
    out = adversarial_hu(hu, np.array([[[0.6, 0.2, -1.0]]], np.float32), None, scale)
    assert out[0, 0, 0] == pytest.approx(200.0)


def test_apply_with_both_fields_off_segments_the_ct_once():
    from napari_advseg.models.unet import predict_labels
    from napari_advseg.widgets._model import Snapshot
    from napari_advseg.widgets._tasks import volume_run

    target, case, config, generator = _setup("zscore", "additive")
    calls = []
    model = target.model
    target.model = lambda x: (calls.append(len(x)), model(x))[1]
    stream = volume_run(Snapshot(case, target, generator, config, None, "cpu"), np.ones(4), np.ones(4), 1.0,
                        False, False, batch_size=2)
    progress = []
    while True:
        try:
            progress.append(next(stream))
        except StopIteration as stop:
            hu, segmentation = stop.value
            break
    assert progress[-1] == (case.volume.n_slices, case.volume.n_slices)
    assert sum(calls) == case.volume.n_slices  # one network pass per slice, none discarded
    assert np.array_equal(hu, case.volume.hu)
    target.model = model
    assert np.array_equal(segmentation, predict_labels(target, case.images))


@pytest.mark.parametrize("normalisation_key", ["zscore", "window"])
def test_apply_to_whole_volume_equals_export_and_explore(tmp_path, normalisation_key):
    from napari_advseg.widgets._model import Snapshot
    from napari_advseg.widgets._tasks import export_run, volume_run

    target, case, config, generator = _setup(normalisation_key, "additive")
    snapshot = Snapshot(case, target, generator, config, None, "cpu")
    eps_phi, eps_b = np.array([1.0, -2.0, 0.5, 0.0]), np.array([-1.0, 2.5, 0.0, 1.0])
    stream = volume_run(snapshot, eps_phi, eps_b, 1.0, True, True)
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            applied_hu, applied_seg = stop.value
            break
    export_run(snapshot, tmp_path, None, eps_phi, eps_b, 1.0, True, True)
    exported = load_ct(tmp_path / "adversarial_hu.nii.gz")
    assert np.array_equal(applied_hu, exported.hu)
    assert np.array_equal(applied_seg, load_labels(tmp_path / "adversarial_seg.nii.gz", exported))

    # The Explore layers: the same formula, one slice at a time. Against a volume run in batches of
    # one slice it is exact; against batches of four, convolution round-off alone differs.
    explorer = SliceExplorer(generator, config, target, scale=case.scale)
    z = 2
    explorer.set_slice(case.images[z], case.labels[z], hu=case.volume.hu[z])
    view = explorer.render(eps_phi, eps_b)
    one_by_one = run_attack_volume(attack_volume(generator, config, target, case, eps_phi=eps_phi, eps_b=eps_b,
                                                 batch_size=1))
    assert np.array_equal(view.adversarial_hu, one_by_one.adversarial_hu[z])
    assert np.array_equal(view.adversarial_segmentation, one_by_one.segmentation[z])
    assert np.allclose(view.adversarial_hu, applied_hu[z], atol=1.0)


class CountingTarget(nn.Module):
    """IntensityBands that counts the slices it is asked to segment."""

    def __init__(self, centres):
        super().__init__()
        self.bands = IntensityBands(centres)
        self.slices_seen = 0

    def forward(self, x):
        self.slices_seen += x.shape[0]
        return self.bands(x)


def test_clean_segmentation_is_reused_or_skipped_with_the_same_adversarial_result():
    target, case, config, generator = _setup("zscore", "additive")
    counter = CountingTarget(NORMALISATIONS["zscore"][1])
    target.model = counter
    n = case.volume.n_slices
    full = run_attack_volume(attack_volume(generator, config, target, case, seed=3))
    assert counter.slices_seen == 2 * n  # the clean and the adversarial volume
    assert full.clean_segmentation.any() and full.organs

    counter.slices_seen = 0
    reused = run_attack_volume(attack_volume(generator, config, target, case, seed=3,
                                             clean_segmentation=full.clean_segmentation))
    assert counter.slices_seen == n  # the adversarial volume only
    assert np.array_equal(reused.segmentation, full.segmentation)
    assert np.array_equal(reused.clean_segmentation, full.clean_segmentation)
    assert reused.organs == full.organs

    counter.slices_seen = 0
    skipped = run_attack_volume(attack_volume(generator, config, target, case, seed=3, predict_clean=False))
    assert counter.slices_seen == n
    assert np.array_equal(skipped.segmentation, full.segmentation)
    assert np.array_equal(skipped.adversarial_hu, full.adversarial_hu)
    assert skipped.clean_segmentation is None and skipped.organs == {}

    with pytest.raises(Exception, match="clean segmentation to reuse has shape"):
        run_attack_volume(attack_volume(generator, config, target, case,
                                        clean_segmentation=full.clean_segmentation[1:]))


def test_evaluation_segments_the_clean_slices_once_for_every_sample():
    from napari_advseg.evaluation.report import evaluate_attack

    target, case, config, generator = _setup("zscore", "additive")
    counter = CountingTarget(NORMALISATIONS["zscore"][1])
    target.model = counter
    n = case.volume.n_slices
    reports = []
    for samples in (1, 3):
        counter.slices_seen = 0
        reports.append(evaluate_attack(generator, config, target, [(case.images, case.labels)],
                                          samples=samples, seed=0, batch_size=2))
        assert counter.slices_seen == n * (1 + samples)
    one, three = reports
    assert one["organs"].keys() == three["organs"].keys()
    for name, row in one["organs"].items():
        assert row["dice_clean"] == three["organs"][name]["dice_clean"]


def test_bias_acts_in_hu_before_the_window_so_tissue_beyond_it_stays():
    from napari_advseg.attack.fields import apply_fields

    # pixels at the bounds (air at -1, bone at +1) and within; a bias of +-0.3
    image = torch.tensor([[[[-1.0, -0.5, 0.0, 0.5, 1.0]]]])
    for sign in (1.0, -1.0):
        out = apply_fields(image, None, torch.full_like(image, 0.3 * sign), "additive", (-1.0, 1.0))
        assert out[0, 0, 0, 0] == -1.0 and out[0, 0, 0, 4] == 1.0
        assert torch.allclose(out[0, 0, 0, 1:4], image[0, 0, 0, 1:4] + 0.3 * sign)

    target, case, config, generator = _setup("window", "additive")
    config = config.replace(fields="bias")
    hu = case.volume.hu
    beyond = (hu <= -200.0) | (hu >= 300.0)
    assert beyond.any() and (~beyond).any()
    for sign in (1.0, -1.0):
        result = run_attack_volume(attack_volume(generator, config, target, case, eps_phi=np.zeros(4),
                                                 eps_b=np.full(4, 3.0 * sign)))
        assert np.abs(result.bias[beyond]).max() > 1.0  # the field itself is there
        assert np.array_equal(result.adversarial_hu[beyond], hu[beyond])  # air and bone keep their HU
        assert np.abs(result.adversarial_hu[~beyond] - hu[~beyond]).max() > 1.0
