"""The synthetic abdominal CT phantom: determinism, contents, anatomy and array orientation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.data.phantom import Phantom, make_phantom
from napari_advseg.data.phantom_anatomy import KIDNEY_LEFT, KIDNEY_RIGHT, LIVER, PANCREAS, SPLEEN

ORGANS = (LIVER, SPLEEN, KIDNEY_LEFT, KIDNEY_RIGHT, PANCREAS)
SMALL = (16, 64, 64)


@pytest.fixture(scope="module")
def default() -> Phantom:
    return make_phantom(0)


@pytest.fixture(scope="module")
def several() -> list[Phantom]:
    """A few subjects at the default shape."""
    return [make_phantom(seed) for seed in (1, 2, 3)]


def test_api_dtypes_and_shapes(default):
    p = default
    assert isinstance(p, Phantom)
    assert p.hu.shape == p.labels.shape == (48, 128, 128)
    assert p.hu.dtype == np.int16 and p.labels.dtype == np.uint8
    assert p.spacing == (5.0, 3.0, 3.0) and all(isinstance(s, float) for s in p.spacing)
    assert p.seed == 0
    assert p.class_names == ORGAN_CLASSES
    assert p.hu.min() >= -1024 and p.hu.max() <= 3071
    assert set(np.unique(p.labels)) <= set(range(6))
    with pytest.raises(AttributeError):
        p.seed = 1  # frozen


def test_other_shape_and_spacing():
    p = make_phantom(5, shape=(8, 48, 80), spacing=(2.5, 0.8, 0.8))
    assert p.hu.shape == p.labels.shape == (8, 48, 80)
    assert p.spacing == (2.5, 0.8, 0.8)
    assert p.labels.max() <= 5


def test_same_seed_same_arrays_different_seed_different():
    a, b, c = make_phantom(7, SMALL), make_phantom(7, SMALL), make_phantom(8, SMALL)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.hu, c.hu)
    assert not np.array_equal(a.labels, c.labels)


def test_subjects_differ_in_anatomy(default, several):
    volumes = [np.bincount(p.labels.ravel(), minlength=6)[1:] for p in (default, *several)]
    for organ in range(5):
        sizes = [v[organ] for v in volumes]
        assert max(sizes) > 1.05 * min(sizes), f"{ORGAN_CLASSES[organ + 1]} has the same size in every subject"


@pytest.mark.parametrize("shape", [(48, 128, 128), SMALL])
def test_every_organ_present(shape):
    for seed in range(6):
        counts = np.bincount(make_phantom(seed, shape).labels.ravel(), minlength=6)
        assert (counts[1:] > 0).all(), f"seed {seed} shape {shape}: voxel counts {counts.tolist()}"


def test_pancreas_is_the_smallest_and_liver_the_largest_organ(default, several):
    for p in (default, *several):
        counts = np.bincount(p.labels.ravel(), minlength=6)
        assert counts[PANCREAS] == min(counts[o] for o in ORGANS)
        assert counts[LIVER] == max(counts[o] for o in ORGANS)


@pytest.mark.parametrize("organ, lo, hi", [
    (LIVER, 52, 75), (SPLEEN, 40, 60), (PANCREAS, 28, 52), (KIDNEY_LEFT, 100, 185), (KIDNEY_RIGHT, 100, 185),
])
def test_organ_mean_hu(default, several, organ, lo, hi):
    for p in (default, *several):
        mean = float(p.hu[p.labels == organ].mean())
        assert lo <= mean <= hi, f"{ORGAN_CLASSES[organ]} seed {p.seed}: mean {mean:.1f} HU"


def test_body_tissues_have_realistic_hu(default):
    hu, labels = default.hu, default.labels
    # Fat (the most common value between -150 and -50 HU) and muscle/soft tissue are both abundant.
    body = hu[hu > -500]
    assert np.mean((body > -130) & (body < -70)) > 0.15
    assert np.mean((body > 20) & (body < 90)) > 0.15
    # Noise: neighbouring voxels of a large homogeneous organ differ by sigma * sqrt(2) on average.
    inside = (labels[:, 1:-1, 1:-1] == LIVER) & (labels[:, 1:-1, 2:] == LIVER)
    diff = (hu[:, 1:-1, 2:].astype(np.float32) - hu[:, 1:-1, 1:-1])[inside]
    sigma = np.std(diff) / np.sqrt(2)
    assert 8 < sigma < 30


def test_kidney_cortex_brighter_than_medulla(default, several):
    for p in (default, *several):
        for kidney in (KIDNEY_LEFT, KIDNEY_RIGHT):
            values = p.hu[p.labels == kidney]
            q10, q90 = np.percentile(values, [10, 90])
            assert q90 - q10 > 80, f"seed {p.seed} {ORGAN_CLASSES[kidney]}: q10 {q10}, q90 {q90}"


def test_radiological_orientation(default, several):
    # Liver (patient's right) on the image's left (small column index), spleen on its right.
    for p in (default, *several):
        nx = p.labels.shape[2]
        cols = np.arange(nx)[None, None, :]
        liver = p.labels == LIVER
        spleen = p.labels == SPLEEN
        assert np.mean(np.broadcast_to(cols, liver.shape)[liver] < nx / 2) > 0.75
        assert np.mean(np.broadcast_to(cols, spleen.shape)[spleen] >= nx / 2) > 0.95
        # The kidney called left lies on the image's right.
        zz, yy, xx = np.nonzero(p.labels == KIDNEY_LEFT)
        assert xx.mean() > nx / 2
        zz, yy, xx = np.nonzero(p.labels == KIDNEY_RIGHT)
        assert xx.mean() < nx / 2


def test_anatomy_along_z_and_front_to_back(default, several):
    for p in (default, *several):
        centroid = {o: np.argwhere(p.labels == o).mean(axis=0) for o in ORGANS}
        # Upper abdomen organs above the kidneys; the right kidney a little lower than the left.
        assert centroid[LIVER][0] > centroid[KIDNEY_LEFT][0]
        assert centroid[SPLEEN][0] > centroid[KIDNEY_LEFT][0]
        assert centroid[KIDNEY_RIGHT][0] < centroid[KIDNEY_LEFT][0]
        # The pancreas lies in front of the kidneys (smaller row index).
        assert centroid[PANCREAS][1] < min(centroid[KIDNEY_LEFT][1], centroid[KIDNEY_RIGHT][1])


def test_air_outside_the_body(default):
    hu = default.hu
    for corner in (hu[:, :5, :5], hu[:, :5, -5:], hu[:, -5:, :5], hu[:, -5:, -5:]):
        assert corner.max() < -900
    assert (default.labels[:, :5, :] == 0).all() and (default.labels[:, :, :5] == 0).all()
    # Each slice has a body: a large region above -500 HU in the middle of the image.
    ny, nx = hu.shape[1:]
    centre = hu[:, ny // 4: 3 * ny // 4, nx // 4: 3 * nx // 4]
    assert (np.mean(centre > -500, axis=(1, 2)) > 0.8).all()


@pytest.mark.parametrize("shape", [(48, 128, 128), SMALL])
def test_organs_appear_and_disappear_along_z(shape):
    p = make_phantom(2, shape)
    per_slice = (p.labels > 0).reshape(shape[0], -1).sum(axis=1)
    assert (per_slice == 0).any(), "every slice has an organ"
    assert (per_slice > 0).sum() >= shape[0] // 2
    # The lowest slices are below all five organs.
    assert per_slice[0] == 0
    # Every organ covers only part of the z range, and its cross-section grows then shrinks.
    for organ in ORGANS:
        area = (p.labels == organ).reshape(shape[0], -1).sum(axis=1)
        present = np.nonzero(area)[0]
        assert 0 < len(present) < shape[0], ORGAN_CLASSES[organ]
        if organ != PANCREAS and len(present) >= 5:
            assert area[present[0]] < area.max() and area[present[-1]] < area.max(), ORGAN_CLASSES[organ]


@pytest.mark.parametrize("shape", [(48, 128, 128), SMALL])
def test_spine_on_every_slice(shape):
    p = make_phantom(4, shape)
    ny, nx = shape[1:]
    # Bone (> 300 HU) near the middle column in the posterior half of every slice.
    back = p.hu[:, ny // 2:, nx // 2 - nx // 10: nx // 2 + nx // 10]
    assert ((back > 300).reshape(shape[0], -1).sum(axis=1) >= 3).all()
    assert (p.labels[p.hu > 300] == 0).all()  # bone is never labelled as an organ


def test_bowel_gas_inside_the_body(default):
    hu, labels = default.hu, default.labels
    ny, nx = hu.shape[1:]
    centre = hu[:, ny // 3: 2 * ny // 3, nx // 3: 2 * nx // 3]
    assert (centre < -900).sum() > 50  # gas pockets in bowel loops
    assert (labels[hu < -900] == 0).all()  # no organ label on gas


@pytest.mark.parametrize("bad", [(16, 64), (0, 64, 64), (16, 8, 64), (16.5, 64, 64)])
def test_bad_shape_raises(bad):
    with pytest.raises(ValueError):
        make_phantom(0, shape=bad)


def test_bad_spacing_raises():
    with pytest.raises(ValueError):
        make_phantom(0, shape=SMALL, spacing=(5.0, 0.0, 3.0))
