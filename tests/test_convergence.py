"""splicemix.results.convergence: the one definition of a converged run, on constructed mAP histories."""

from __future__ import annotations

import math

import pytest

from splicemix.results import (
    BEST_MAP_EPOCH,
    CONVERGED,
    CONVERGENCE_GAIN,
    CONVERGENCE_MIN_GAIN,
    CONVERGENCE_WINDOW,
    convergence,
)


def history(maps, eval_every=1):
    """Metric lines for epochs 1..len(maps); mAP only on the evaluated epochs (and always the last)."""
    n = len(maps)
    return [{"epoch": e, **({"mAP": m} if e % eval_every == 0 or e == n else {})} for e, m in enumerate(maps, start=1)]


def test_the_definition_constants():
    assert CONVERGENCE_WINDOW == 0.25 and CONVERGENCE_MIN_GAIN == 0.3  # the numbers


def test_rising_curve_has_not_converged():
    c = convergence(history([10, 20, 30, 40, 50, 60, 70, 80]))  # 8 epochs: window 2, compared with epoch 6
    assert c.window == 2 and c.gain == pytest.approx(80 - 60) and not c.converged and c.best_epoch == 8


def test_flat_curve_has_converged():
    c = convergence(history([10.0, 30.0, 40.0, 40.1, 40.1, 40.2, 40.2, 40.3]))
    assert c.gain == pytest.approx(40.3 - 40.2) and c.converged  # best up to epoch 6: 40.2 and c.best_epoch == 8


def test_noisy_curve_uses_the_best_so_far():
    # dips in the window do not count against it; only a new best counts
    c = convergence(history([20, 40, 50, 55, 60, 58, 61, 59.5, 55, 60.9, 58, 60.0]))  # window 3: epochs 10-12
    assert c.window == 3 and c.gain == pytest.approx(0.0) and c.converged and c.best_epoch == 7
    c = convergence(history([20, 40, 50, 55, 60, 58, 61, 59.5, 55, 61.5, 58, 60.0]))
    assert c.gain == pytest.approx(0.5) and not c.converged and c.best_epoch == 10


def test_threshold_is_strict():
    assert not convergence(history([50.0, 50.0, 50.0, 50.5])).converged
    assert convergence(history([50.0, 50.0, 50.0, 50.25])).converged
    assert not convergence(history([50.0, 50.0, 50.0, 50.25]), min_gain=0.2).converged


def test_single_epoch_and_empty_histories_are_unknown():
    c = convergence(history([42.0]))
    assert not c.converged and c.gain is None and c.best_epoch == 1 and c.window == 1
    assert c.metrics() == {CONVERGED: False, BEST_MAP_EPOCH: 1}  # the gain is left out, not NaN
    c = convergence([])
    assert not c.converged and c.gain is None and c.best_epoch is None
    c = convergence([{"epoch": 1}, {"epoch": 2}])  # nothing evaluated
    assert not c.converged and c.best_epoch is None and c.window == 1


def test_eval_every_leaves_gaps():
    # 20 epochs, evaluated every 5: window 5 (epochs 16-20), compared with the best up to epoch 15
    maps = [float(e) for e in range(1, 21)]
    c = convergence(history(maps, eval_every=5))
    assert c.window == 5 and c.gain == pytest.approx(20 - 15) and c.best_epoch == 20
    # evaluated every 10: only epoch 10 precedes the window
    c = convergence(history(maps, eval_every=10))
    assert c.gain == pytest.approx(20 - 10)
    # nothing evaluated before the window: unknown
    c = convergence(history([1.0, 2.0, 3.0, 4.0], eval_every=4))
    assert c.gain is None and not c.converged


def test_the_window_is_a_quarter_rounded_up():
    for epochs, window in ((1, 1), (3, 1), (4, 1), (5, 2), (20, 5), (21, 6)):
        assert convergence(history([1.0] * epochs)).window == window == max(1, math.ceil(epochs / 4))


def test_non_finite_maps_are_ignored_and_metrics_keys():
    c = convergence(history([10.0, float("nan"), 10.1, 10.2]))
    assert c.best_epoch == 4 and c.gain == pytest.approx(0.1)
    assert c.metrics() == {CONVERGED: True, CONVERGENCE_GAIN: c.gain, BEST_MAP_EPOCH: 4}
