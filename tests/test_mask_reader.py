"""The mask readers' common base: what every dataset's reader refuses, the same way, before any file is opened."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbench.data.candid.seg import CandidMasks
from cxrbench.data.common.masks import MaskReader
from cxrbench.data.jsrt.loader import SCRMasks
from cxrbench.data.mimic.lungs import LungMasks, LungZoneMasks
from cxrbench.data.paxray.loader import PaxrayMasks
from cxrbench.data.siim.loader import SiimMaskReader
from cxrbench.data.vindr.ribcxr import RibMasks
from cxrbench.errors import DataError


class ToyMasks(MaskReader):
    """Two images' masks of one target, in memory; records what it was asked to read."""

    dataset = "Toy"

    def __init__(self) -> None:
        self.masks = {"a": np.eye(3, dtype=bool)[None], "b": np.zeros((1, 3, 3), dtype=bool)}
        self.read_calls: list[tuple[str, str]] = []

    def targets(self) -> list[str]:
        return ["lesion"]

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.masks

    def read(self, target: str, reference: str) -> np.ndarray:
        self.read_calls.append((target, reference))
        return self.masks[reference]


def test_a_known_reference_is_read():
    reader = ToyMasks()
    np.testing.assert_array_equal(reader("lesion", "a"), np.eye(3, dtype=bool)[None])
    assert reader.read_calls == [("lesion", "a")]


def test_an_unknown_target_is_refused_naming_the_dataset_and_its_targets():
    reader = ToyMasks()
    with pytest.raises(DataError, match=r"Toy has no mask target 'heart' \(its mask targets: \['lesion'\]\)"):
        reader("heart", "a")
    assert reader.read_calls == []


@pytest.mark.parametrize("reference", [None, float("nan"), "zzz"])
def test_a_missing_or_unknown_reference_is_refused_before_reading(reference):
    reader = ToyMasks()
    with pytest.raises(DataError, match=r"Toy target 'lesion': no mask for reference .* \(an image id of the benchmark\)"):
        reader("lesion", reference)
    assert reader.read_calls == []


@pytest.mark.parametrize("cls", [CandidMasks, SCRMasks, LungMasks, LungZoneMasks, PaxrayMasks, SiimMaskReader, RibMasks])
def test_every_dataset_reader_is_a_mask_reader_that_names_its_dataset(cls):
    assert issubclass(cls, MaskReader)
    assert isinstance(cls.dataset, str) and cls.dataset
    assert not getattr(cls, "__abstractmethods__", None)
