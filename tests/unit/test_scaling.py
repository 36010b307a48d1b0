"""The scale policy (handlers/scaling.py): the card's object sizes and the next pass's scale."""

from __future__ import annotations

import pytest

from handlers.scaling import (
    DEFAULT_OBJECT_FRACTION,
    MAX_SCALE,
    ObjectScale,
    coarse_scale,
    within_budget,
)
from model_src import InputSpec

SPEC = InputSpec((64, 64), 1, (0.1,), (0.3,))
DIGITS = ObjectScale(15.0, 25.0)  # typical sqrt(15 * 25) = 19.4 px


def test_the_card_says_the_size_and_older_cards_get_the_documented_default():
    with_size = InputSpec((64, 64), 1, (0.1,), (0.3,), object_size=(15.0, 25.2))
    assert ObjectScale.from_spec(with_size) == ObjectScale(15.0, 25.2)
    low, high = DEFAULT_OBJECT_FRACTION
    assert ObjectScale.from_spec(SPEC) == ObjectScale(low * 64, high * 64)
    assert InputSpec.from_dict(with_size.to_dict()) == with_size
    assert "object_size" not in SPEC.to_dict()  # older cards read back unchanged
    with pytest.raises(ValueError, match="object_size"):
        InputSpec((64, 64), 1, (0.1,), (0.3,), object_size=(30.0, 10.0))


def test_objects_in_range_end_the_search():
    assert DIGITS.next_scale(0.25, [18.0, 20.0, 24.0]) is None
    assert DIGITS.next_scale(1.0, [14.0, 19.0, 30.0]) is None  # the median counts


def test_too_small_after_a_reduction_looks_at_scale_1_first():
    """At 0.25, 28 px digits are 5 px blobs: their measured size is not trusted beyond 1."""
    assert DIGITS.next_scale(0.25, [2.0, 3.0, 3.0]) == 1.0  # not 0.25 * 19.4 / 3 = 1.6
    assert DIGITS.next_scale(0.25, [5.0, 5.0]) == pytest.approx(0.25 * DIGITS.typical / 5)
    assert DIGITS.next_scale(0.25, []) == 1.0  # nothing seen after a reduction: look closer


def test_too_small_at_scale_1_enlarges_to_the_typical_size():
    assert DIGITS.next_scale(1.0, [10.0, 10.0, 11.0]) == pytest.approx(DIGITS.typical / 10.0)
    assert DIGITS.next_scale(1.0, []) is None  # nothing there at full resolution: done


def test_too_large_reduces_to_the_typical_size():
    """640x480 page, digits of 112 px: at the coarse 0.4 they are ~45 px."""
    assert DIGITS.next_scale(0.4, [44.0, 45.0, 46.0]) == pytest.approx(0.4 * DIGITS.typical / 45)


def test_scales_are_bounded_and_small_steps_are_skipped():
    assert DIGITS.next_scale(1.0, [1.0, 1.0, 1.0]) == MAX_SCALE
    assert DIGITS.next_scale(1.0, [12.5, 12.5]) is None  # 1/1.25 of the range: in tolerance


def test_coarse_pass_reduces_big_images_only():
    assert coarse_scale(64, 64) == 1.0
    assert coarse_scale(1024, 512) == 0.25
    assert coarse_scale(4000, 3000) == pytest.approx(0.064)


def test_budget_lowers_a_scale_that_would_make_too_many_pixels():
    assert within_budget(2.0, 100, 100, 1_000_000) == 2.0
    assert within_budget(4.0, 1000, 1000, 4_000_000) == pytest.approx(2.0)
