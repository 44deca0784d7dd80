"""Tests for napari_advseg.data.slices: the train/test split and organ slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_advseg.data.slices import organ_slices, split_slices
from napari_advseg.errors import AdvsegError


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 112])
def test_split_slices_partition(n):
    everything = split_slices(n)
    train, test = split_slices(n, "train"), split_slices(n, "test")
    assert np.array_equal(everything, np.arange(n))
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), everything)
    assert np.all(test % 3 == 2) and np.all(train % 3 != 2)


def test_split_slices_rule_and_errors():
    assert split_slices(10, "test").tolist() == [2, 5, 8]
    assert split_slices(10, "train").tolist() == [0, 1, 3, 4, 6, 7, 9]
    with pytest.raises(AdvsegError):
        split_slices(10, "validation")
    with pytest.raises(AdvsegError):
        split_slices(-1)


def test_organ_slices():
    labels = np.zeros((6, 3, 3), np.uint8)
    labels[1, 0, 0] = 1
    labels[3, 2, 2] = 5
    labels[4, 1, 1] = 2
    assert organ_slices(labels).tolist() == [1, 3, 4]
    assert organ_slices(labels, [5]).tolist() == [3]
    assert organ_slices(labels, 2).tolist() == [4]
    assert organ_slices(labels, (1, 2)).tolist() == [1, 4]
    assert organ_slices(labels, [3]).size == 0
