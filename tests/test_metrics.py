"""Tests for splicemix.metrics, with scikit-learn as the oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_score, recall_score

from splicemix.metrics import average_precision, mean_average_precision, multilabel_f1


def _sk_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    out = []
    for k in range(scores.shape[1]):
        if targets[:, k].sum() == 0:
            out.append(np.nan)
        else:
            out.append(average_precision_score(targets[:, k], scores[:, k]))
    return np.array(out)


def _sk_f1(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    kw = dict(zero_division=0)
    cp = precision_score(targets, pred, average="macro", **kw)
    cr = recall_score(targets, pred, average="macro", **kw)
    op = precision_score(targets, pred, average="micro", **kw)
    orec = recall_score(targets, pred, average="micro", **kw)
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r > 0 else 0.0  # noqa: E731
    return {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": orec, "OF1": f1(op, orec)}


def _tied_data(seed: int, n: int = 200, k: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random((n, k)), 1)  # only 11 distinct values: many ties
    targets = (rng.random((n, k)) < 0.3).astype(np.int64)
    targets[0] = 1  # every class has a positive
    return scores, targets


# --------------------------------------------------------------------- average precision


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.float32])
def test_ap_matches_sklearn_with_ties_numpy(seed: int, dtype: type) -> None:
    scores, targets = _tied_data(seed)
    got = average_precision(scores, targets.astype(dtype))
    assert got.dtype == np.float64 and got.shape == (7,)
    np.testing.assert_allclose(got, _sk_ap(scores, targets), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tdtype", [torch.int64, torch.bool, torch.float32])
def test_ap_matches_sklearn_torch(tdtype: torch.dtype) -> None:
    scores, targets = _tied_data(3)
    s = torch.tensor(scores, dtype=torch.float32)
    got = average_precision(s, torch.tensor(targets).to(tdtype))
    want = _sk_ap(s.numpy(), targets)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_ap_continuous_scores_and_map() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(300, 5))
    targets = (rng.random((300, 5)) < 0.2).astype(int)
    want = _sk_ap(scores, targets)
    np.testing.assert_allclose(average_precision(scores, targets), want, rtol=1e-12)
    assert mean_average_precision(scores, targets) == pytest.approx(want.mean(), rel=1e-12)


def test_ap_known_values() -> None:
    # one column, ranking: 0.9(+) 0.8(-) 0.7(+) -> AP = (1 + 2/3) / 2
    scores = np.array([[0.9], [0.8], [0.7]])
    targets = np.array([[1], [0], [1]])
    assert average_precision(scores, targets)[0] == pytest.approx((1 + 2 / 3) / 2)
    # full tie: precision at the end of the run for every positive = 2/3
    tied = np.array([[0.5], [0.5], [0.5]])
    assert average_precision(tied, targets)[0] == pytest.approx(2 / 3)


def test_ap_nan_for_all_negative_column_and_nanmean() -> None:
    scores, targets = _tied_data(4)
    targets[:, 2] = 0
    ap = average_precision(scores, targets)
    assert np.isnan(ap[2])
    assert not np.isnan(np.delete(ap, 2)).any()
    assert mean_average_precision(scores, targets) == pytest.approx(np.nanmean(ap))


def test_map_all_nan_raises() -> None:
    with pytest.raises(ValueError, match="none of the 3 classes has a positive"):
        mean_average_precision(np.random.rand(4, 3), np.zeros((4, 3)))


def test_ap_ignore_equals_dropping_rows() -> None:
    scores, targets = _tied_data(6)
    rng = np.random.default_rng(60)
    ignore = rng.random(scores.shape) < 0.25
    ignore[0] = False  # keep one positive per class
    got = average_precision(scores, targets, ignore=ignore)
    for k in range(scores.shape[1]):
        keep = ~ignore[:, k]
        want = average_precision_score(targets[keep, k], scores[keep, k])
        assert got[k] == pytest.approx(want, rel=1e-12, abs=1e-12)
    # ignoring changes the result (the test can fail)
    assert not np.allclose(got, average_precision(scores, targets))


def test_ap_ignore_all_positives_gives_nan() -> None:
    scores = np.array([[0.1, 0.2], [0.3, 0.4]])
    targets = np.array([[1, 1], [0, 1]])
    ignore = np.array([[True, False], [False, False]])
    ap = average_precision(scores, targets, ignore=ignore)
    assert np.isnan(ap[0]) and ap[1] == pytest.approx(1.0)


# --------------------------------------------------------------------- F1 family


@pytest.mark.parametrize("seed", [0, 1])
def test_f1_threshold_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = np.round(rng.random((150, 6)), 2)
    targets = (rng.random((150, 6)) < 0.3).astype(int)
    targets[:, 5] = 0  # a class with no positives -> recall 0
    probs[:, 4] = 0.1  # a class with no predictions -> precision 0
    got = multilabel_f1(probs, targets, threshold=0.5)
    want = _sk_f1((probs >= 0.5).astype(int), targets)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_f1_torch_input() -> None:
    rng = np.random.default_rng(7)
    probs = rng.random((50, 4)).astype(np.float32)
    targets = rng.random((50, 4)) < 0.4
    got = multilabel_f1(torch.from_numpy(probs), torch.from_numpy(targets))
    want = _sk_f1((probs >= 0.5).astype(int), targets.astype(int))
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_f1_top_k_hand_computed() -> None:
    probs = np.array(
        [
            [0.9, 0.8, 0.7, 0.6],  # top-2 = {0, 1}; 2 and 3 are >= 0.5 but cut
            [0.2, 0.6, 0.4, 0.95],  # top-2 = {3, 1}
            [0.3, 0.1, 0.45, 0.2],  # top-2 = {2, 0} but both < 0.5 -> none
        ]
    )
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    got = multilabel_f1(probs, targets, threshold=0.5, top_k=2)
    # predictions: row0 {0,1}, row1 {1,3}
    # class 0: tp1 pred1 true2 ; class 1: tp1 pred2 true1 ; class 2: tp0 pred0 true1 ;
    # class 3: tp0 pred1 true0
    cp = (1 / 1 + 1 / 2 + 0 + 0) / 4
    cr = (1 / 2 + 1 / 1 + 0 + 0) / 4
    op, orec = 2 / 4, 2 / 4
    assert got["CP"] == pytest.approx(cp)
    assert got["CR"] == pytest.approx(cr)
    assert got["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert got["OP"] == pytest.approx(op)
    assert got["OR"] == pytest.approx(orec)
    assert got["OF1"] == pytest.approx(0.5)
    # without top_k, row 0 also predicts classes 2 and 3
    assert multilabel_f1(probs, targets, threshold=0.5)["OP"] == pytest.approx(3 / 6)


def test_f1_top_k_matches_sklearn_on_topk_predictions() -> None:
    rng = np.random.default_rng(8)
    probs = rng.random((100, 10))
    targets = (rng.random((100, 10)) < 0.3).astype(int)
    got = multilabel_f1(probs, targets, threshold=0.5, top_k=3)
    kth = np.sort(probs, axis=1)[:, -3][:, None]  # continuous scores: no ties
    pred = ((probs >= kth) & (probs >= 0.5)).astype(int)
    assert pred.sum(axis=1).max() <= 3
    want = _sk_f1(pred, targets)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_f1_ignore_excludes_entries() -> None:
    rng = np.random.default_rng(9)
    probs = rng.random((80, 5))
    targets = (rng.random((80, 5)) < 0.4).astype(int)
    ignore = rng.random((80, 5)) < 0.3
    got = multilabel_f1(probs, targets, ignore=ignore)
    pred = ((probs >= 0.5) & ~ignore).astype(int)
    want = _sk_f1(pred, targets * ~ignore)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got != multilabel_f1(probs, targets)


def test_f1_all_zero() -> None:
    got = multilabel_f1(np.zeros((3, 2)), np.zeros((3, 2)))
    assert got == {"CP": 0.0, "CR": 0.0, "CF1": 0.0, "OP": 0.0, "OR": 0.0, "OF1": 0.0}


# --------------------------------------------------------------------- property test

_matrices = st.integers(1, 12).flatmap(
    lambda n: st.integers(2, 4).flatmap(  # K >= 2: sklearn reads one column as binary
        lambda k: st.tuples(
            st.lists(
                st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=k, max_size=k),
                min_size=n,
                max_size=n,
            ),
            st.lists(st.lists(st.integers(0, 1), min_size=k, max_size=k), min_size=n, max_size=n),
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(_matrices)
def test_property_vs_sklearn(data: tuple[list, list]) -> None:
    scores = np.array(data[0], dtype=np.float64)
    targets = np.array(data[1], dtype=np.int64)
    got = average_precision(scores, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(got, _sk_ap(scores, targets), rtol=1e-12, atol=1e-12)
        want = _sk_f1((scores >= 0.5).astype(int), targets)
    f1 = multilabel_f1(scores, targets)
    for key in want:
        assert f1[key] == pytest.approx(want[key], abs=1e-12), key


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "scores, targets, match",
    [
        (
            np.zeros((3, 2)),
            np.zeros((3, 4)),
            r"shape mismatch: scores has shape \(3, 2\) but targets has shape \(3, 4\)",
        ),
        (np.zeros(5), np.zeros(5), r"scores must be 2-D \(N, K\), got shape \(5,\)"),
        (np.zeros((3, 2)), np.zeros((3, 2, 1)), r"targets must be 2-D \(N, K\), got shape \(3, 2, 1\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), r"no samples: scores has shape \(0, 3\)"),
        (np.array([[0.1, np.nan]]), np.array([[1, 0]]), r"scores must be finite.*first at \[0, 1\] = nan"),
        (np.array([[0.1, np.inf]]), np.array([[1, 0]]), r"scores must be finite.*= inf"),
        (np.zeros((2, 2)), np.array([[0, 2], [1, 0]]), r"targets must contain only 0/1.*\[2\]"),
    ],
)
def test_ap_validation(scores: np.ndarray, targets: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        average_precision(scores, targets)
    with pytest.raises(ValueError, match=match.replace("scores", "probs")):
        multilabel_f1(scores, targets)


def test_validation_ignore_and_options() -> None:
    s, t = np.zeros((3, 2)), np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"ignore has shape \(2, 2\) but scores has shape \(3, 2\)"):
        average_precision(s, t, ignore=np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        multilabel_f1(s, t, top_k=0)
    with pytest.raises(ValueError, match="threshold must be finite"):
        multilabel_f1(s, t, threshold=float("nan"))
    with pytest.raises(ValueError, match=r"shape mismatch: probs has shape \(3, 2\)"):
        multilabel_f1(torch.zeros(3, 2), torch.zeros(2, 2))
