"""Multi-label evaluation metrics: per-class AP, mAP and the CP/CR/CF1/OP/OR/OF1 family.

Conventions (see docs/DESIGN.md and the "Evaluation conventions" of the reference):

* All results are fractions in [0, 1]; callers that log percentages multiply by 100.
* Inputs are ``(N, K)`` matrices: N images, K classes. ``scores`` / ``probs`` are real
  numbers (logits or probabilities), ``targets`` are multi-hot 0/1 (bool, int or float).
  Torch tensors (on any device) and numpy arrays are both accepted; tensors are moved to
  the CPU once.
* ``ignore`` is an optional ``(N, K)`` boolean mask. An entry that is True is dropped from
  that class's evaluation entirely, as if the image did not exist for that class (VOC
  "difficult" objects). For the F1 family it is excluded from every count.
* Average precision is the non-interpolated AP of scikit-learn's
  ``average_precision_score``: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score
  thresholds in decreasing order. Tied scores form a single threshold, so every entry in a
  run of equal scores gets the precision measured at the end of the run. A class with no
  positive (non-ignored) entry has AP NaN; ``mean_average_precision`` skips those.
* Bad input raises ``ValueError`` naming the problem and the shapes/values received.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["average_precision", "mean_average_precision", "multilabel_f1"]

ArrayLike = Any  # numpy array, torch tensor, or nested sequence


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Convert a torch tensor (any device/dtype) or array-like to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        if t.is_floating_point() and t.dtype.itemsize < 4:  # float16 / bfloat16
            t = t.float()
        arr: np.ndarray = t.numpy()
        return arr
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array: {exc}") from exc


def _check_binary(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` as a bool array, requiring every value to be 0 or 1."""
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric or bool 0/1, got dtype {a.dtype}")
    bad = (a != 0) & (a != 1)
    if bad.any():
        vals = np.unique(a[bad])[:5].tolist()
        raise ValueError(f"{name} must contain only 0/1, got other values such as {vals}")
    nonzero: np.ndarray = a != 0
    return nonzero


def _prepare(
    scores: ArrayLike,
    targets: ArrayLike,
    ignore: ArrayLike | None,
    score_name: str = "scores",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert inputs: float64 scores, bool targets, bool ignore (or None)."""
    s = _to_numpy(scores, score_name)
    t = _to_numpy(targets, "targets")
    if s.ndim != 2:
        raise ValueError(f"{score_name} must be 2-D (N, K), got shape {tuple(s.shape)}")
    if t.ndim != 2:
        raise ValueError(f"targets must be 2-D (N, K), got shape {tuple(t.shape)}")
    if s.shape != t.shape:
        raise ValueError(
            f"shape mismatch: {score_name} has shape {tuple(s.shape)} but targets has shape {tuple(t.shape)}"
        )
    if s.shape[0] == 0:
        raise ValueError(f"no samples: {score_name} has shape {tuple(s.shape)} (N == 0)")
    if s.shape[1] == 0:
        raise ValueError(f"no classes: {score_name} has shape {tuple(s.shape)} (K == 0)")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
        raise ValueError(f"{score_name} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    finite = np.isfinite(s)
    if not finite.all():
        bad = np.argwhere(~finite)
        i, k = bad[0]
        raise ValueError(
            f"{score_name} must be finite: {len(bad)} non-finite value(s) in shape "
            f"{tuple(s.shape)}, first at [{i}, {k}] = {s[i, k]}"
        )
    t = _check_binary(t, "targets")
    m: np.ndarray | None = None
    if ignore is not None:
        m = _to_numpy(ignore, "ignore")
        if m.shape != s.shape:
            raise ValueError(
                f"shape mismatch: ignore has shape {tuple(m.shape)} but {score_name} has shape {tuple(s.shape)}"
            )
        m = _check_binary(m, "ignore")
    return s, t, m


def average_precision(scores: ArrayLike, targets: ArrayLike, ignore: ArrayLike | None = None) -> np.ndarray:
    """Per-class non-interpolated average precision, shape ``(K,)``, float64 fractions.

    Identical to ``sklearn.metrics.average_precision_score(targets[:, k], scores[:, k])``
    for every column k, including tie handling (a run of equal scores is one threshold).
    Entries with ``ignore`` True are removed from their class's ranking. A class with no
    positive (non-ignored) target gets NaN.
    """
    s, t, m = _prepare(scores, targets, ignore)
    # Work class-major, (K, N) C-contiguous, so each class is a contiguous row to sort.
    neg_s = np.ascontiguousarray(-s.T)  # ascending sort of -s == descending sort of s
    keep = np.ones_like(t.T) if m is None else ~m.T
    pos = t.T & keep
    k, n = neg_s.shape

    # The order inside a run of tied scores does not matter (the run is one threshold),
    # so numpy's fast unstable sort is enough.
    order = np.argsort(neg_s, axis=1)
    s_sorted = np.take_along_axis(neg_s, order, axis=1)
    pos_sorted = np.take_along_axis(pos, order, axis=1)
    tp = np.cumsum(pos_sorted, axis=1, dtype=np.float64)
    # TP + FP so far; ignored entries count as neither.
    seen = np.cumsum(np.take_along_axis(keep, order, axis=1), axis=1, dtype=np.float64)

    # For every position, the index of the last position of its run of equal scores.
    run_end = np.ones((k, n), dtype=bool)
    run_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    end_idx = np.where(run_end, np.arange(n), n)
    end_idx = np.minimum.accumulate(end_idx[:, ::-1], axis=1)[:, ::-1]

    tp_end = np.take_along_axis(tp, end_idx, axis=1)
    seen_end = np.take_along_axis(seen, end_idx, axis=1)
    n_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision_end = np.where(seen_end > 0, tp_end / seen_end, 0.0)
        # AP = sum_runs (R_end - R_prev) P_end = sum over positives of P at their run end / P
        ap: np.ndarray = np.where(pos_sorted, precision_end, 0.0).sum(axis=1) / n_pos
    ap[n_pos == 0] = np.nan
    return ap


def mean_average_precision(scores: ArrayLike, targets: ArrayLike, ignore: ArrayLike | None = None) -> float:
    """Mean over classes of :func:`average_precision` (fraction), skipping NaN classes.

    Raises ValueError if no class has a positive (non-ignored) target.
    """
    ap = average_precision(scores, targets, ignore)
    if np.isnan(ap).all():
        raise ValueError(f"mAP undefined: none of the {ap.shape[0]} classes has a positive (non-ignored) target")
    return float(np.nanmean(ap))


def _safe_div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    q: np.ndarray = np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)
    return q


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def multilabel_f1(
    probs: ArrayLike,
    targets: ArrayLike,
    threshold: float = 0.5,
    top_k: int | None = None,
    ignore: ArrayLike | None = None,
) -> dict[str, float]:
    """Per-class (CP, CR, CF1) and overall (OP, OR, OF1) precision / recall / F1.

    Prediction rule: entry (i, k) is predicted positive iff ``probs[i, k] >= threshold``.
    With ``top_k`` given, it must in addition be among the ``top_k`` highest scores of
    image i (the field's convention, as in ML-GCN and the SpliceMix authors' code:
    ``top_k=3, threshold=0.5``). Exactly ``top_k`` entries per image are candidates; ties
    at the cut are broken in favour of the lower class index. The top-k ranking is taken
    over all K classes of the image, before ``ignore`` is applied.

    CP / CR are the means over all K classes of per-class precision / recall; a class with
    no predicted positive has precision 0 and a class with no (non-ignored) positive target
    has recall 0 (scikit-learn's ``average="macro", zero_division=0``). CF1 is the harmonic
    mean of CP and CR (not the mean of per-class F1). OP / OR / OF1 pool all entries
    (``average="micro"``). Any F1 whose precision and recall are both 0 is 0. Entries with
    ``ignore`` True are excluded from all counts. All values are fractions in [0, 1].
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    p, t, m = _prepare(probs, targets, ignore, score_name="probs")
    pred = p >= threshold
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        if top_k < p.shape[1]:
            top = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
            in_top = np.zeros_like(pred)
            np.put_along_axis(in_top, top, True, axis=1)
            pred &= in_top
    if m is not None:
        pred = pred & ~m
        t = t & ~m

    n_correct = (pred & t).sum(axis=0)
    n_pred = pred.sum(axis=0)
    n_true = t.sum(axis=0)

    cp = float(_safe_div(n_correct, n_pred).mean())
    cr = float(_safe_div(n_correct, n_true).mean())
    op = float(_safe_div(n_correct.sum(), n_pred.sum()))
    orec = float(_safe_div(n_correct.sum(), n_true.sum()))
    return {
        "CP": cp,
        "CR": cr,
        "CF1": _f1(cp, cr),
        "OP": op,
        "OR": orec,
        "OF1": _f1(op, orec),
    }
