"""Seed studies: how S runs that differ only in their random seed differ in what they get
wrong, and the lecture's ensemble of them (the sum of their outputs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .losses import get_loss
from .report import format_table


def ensemble_outputs(outputs: ArrayLike, *, loss: str = "softmax_cross_entropy") -> np.ndarray:
    """The lecture's ensemble: the members' outputs [S, n, classes] summed, divided by S -> [n, classes].

    Softmax models are combined as probabilities softmax(logits); other losses' outputs as they
    are. Dividing by S leaves the argmax of the sum unchanged and keeps a single output on the
    scale its decision threshold is meant for.
    """
    o = np.asarray(outputs, np.float64)
    if o.ndim != 3:
        raise ValueError(f"outputs: expected [S, n, classes], got shape {o.shape}")
    get_loss(loss)
    if loss == "softmax_cross_entropy":
        o = np.exp(o - o.max(axis=-1, keepdims=True))
        o = o / o.sum(axis=-1, keepdims=True)
    mean: np.ndarray = o.mean(axis=0)
    return mean


def seed_study(
    predictions: ArrayLike, labels: ArrayLike, *, ensemble_predictions: ArrayLike | None = None
) -> dict[str, Any]:
    """How S runs differ on one test set; predictions: int [S, n], labels: int [n].

    seed_test_error: [S] fractions; seed_errors: [S] counts; pairwise_disagreement: one row per
    pair (a < b): errors both make (`shared_errors`), errors only a / only b makes (the lecture's
    "errors in the 2nd network that the 1st does not make") and the fraction of samples whose
    predicted labels differ; wrong_by_exactly_k: [S + 1] samples misclassified by exactly k
    models; ensemble_test_error when `ensemble_predictions` [n] is given.
    """
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError(f"predictions: expected int labels [S, n], got shape {p.shape}")
    t = np.asarray(labels)
    if t.shape != (p.shape[1],):
        raise ValueError(f"labels: expected shape ({p.shape[1]},) like predictions [S, n], got {t.shape}")
    wrong = p != t[None, :]  # [S, n]
    errors = wrong.sum(axis=1)
    pairs = [
        {
            "a": a,
            "b": b,
            "shared_errors": int(np.sum(wrong[a] & wrong[b])),
            "only_a": int(np.sum(wrong[a] & ~wrong[b])),
            "only_b": int(np.sum(wrong[b] & ~wrong[a])),
            "label_disagreement": float(np.mean(p[a] != p[b])),
        }
        for a in range(p.shape[0])
        for b in range(a + 1, p.shape[0])
    ]
    rates = errors / t.shape[0]
    std = float(rates.std(ddof=1)) if len(rates) > 1 else 0.0
    study: dict[str, Any] = {
        "n_test": int(t.shape[0]),
        "seed_test_error": rates.tolist(),
        "seed_errors": errors.tolist(),
        "test_error_mean": float(rates.mean()),
        "test_error_std": std,
        "test_error_min": float(rates.min()),
        "test_error_max": float(rates.max()),
        "pairwise_disagreement": pairs,
        "wrong_by_exactly_k": np.bincount(wrong.sum(axis=0), minlength=p.shape[0] + 1).tolist(),
    }
    if ensemble_predictions is not None:
        e = np.asarray(ensemble_predictions)
        if e.shape != t.shape:
            raise ValueError(f"ensemble_predictions: expected shape {t.shape} like labels, got {e.shape}")
        study["ensemble_errors"] = int(np.sum(e != t))
        study["ensemble_test_error"] = float(np.mean(e != t))
    return study


def format_study(results: Mapping[str, Any]) -> str:
    """The terminal report of `run_seeds`: per-seed errors, pairwise errors, exactly-k counts, ensemble."""
    n, S = results["n_test"], len(results["seeds"])
    rows = [
        {
            "seed": s,
            "val_error_%": None if v is None else 100 * v,
            "test_error_%": 100 * t,
            "test_errors": e,
            "best_epoch": b,
            "epochs_run": r,
        }
        for s, v, t, e, b, r in zip(
            results["seeds"],
            results["seed_val_error"],
            results["seed_test_error"],
            results["seed_errors"],
            results["best_epochs"],
            results["epochs_run"],
            strict=True,
        )
    ]
    pairs = [
        {"a": results["seeds"][p["a"]], "b": results["seeds"][p["b"]], **{k: p[k] for k in list(p)[2:]}}
        for p in results["pairwise_disagreement"]
    ]
    return "\n".join(
        [
            format_table(rows),
            f"\npairwise: errors both make, errors only a / only b makes (of {n}); fraction of labels that differ",
            format_table(pairs),
            f"\nmisclassified by exactly k of {S} models (k = 0..{S}): {results['wrong_by_exactly_k']}",
            f"{results['model']}, {S} seeds: test error mean {100 * results['test_error_mean']:.2f}% "
            f"(std {100 * results['test_error_std']:.2f}, min {100 * results['test_error_min']:.2f}, "
            f"max {100 * results['test_error_max']:.2f}); ensemble (sum of outputs) "
            f"{100 * results['ensemble_test_error']:.2f}% ({results['ensemble_errors']}/{n}); "
            f"{results['train_seconds']:.1f} s training in {results['chunks']} program(s) on {results['device']}",
        ]
    )
