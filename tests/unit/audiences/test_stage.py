"""The evaluator's duty cycle: at most half of a core over the last seconds, no rest within it."""

from __future__ import annotations

import pytest

from feedhouse.audiences.stage import DutyCycle


def test_a_first_pass_is_followed_by_as_long_a_rest() -> None:
    assert DutyCycle().rest_after(100.0, 1.5) == pytest.approx(1.5)


def test_steady_passes_within_the_share_start_without_rest() -> None:
    duty = DutyCycle(share=0.5, window=10.0)
    rests = [duty.rest_after(100.0 + second, 0.4) for second in range(12)]  # 40% busy
    assert rests[0] == pytest.approx(0.4)
    assert rests[-1] == 0.0, f"expected no rest at 40% busy, got {rests}"


def test_back_to_back_passes_over_the_share_rest_until_the_average_is_back() -> None:
    duty = DutyCycle(share=0.5, window=10.0)
    assert duty.rest_after(0.0, 1.0) == pytest.approx(1.0)
    # The next pass started at once anyway (a backlog): 2 s busy of 2 s, rest 2 s.
    assert duty.rest_after(1.0, 1.0) == pytest.approx(2.0)


def test_passes_older_than_the_window_are_forgotten() -> None:
    duty = DutyCycle(share=0.5, window=10.0)
    duty.rest_after(0.0, 4.0)
    assert duty.rest_after(30.0, 1.0) == pytest.approx(1.0)  # only the new pass counts
