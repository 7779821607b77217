"""Seed statistics for the tables: a 95% interval of a row's mean, whether a row differs from its
table's default row by more than seed noise, and whether a column's best row beats its runner-up by more
than seed noise (only then is it set in bold).

Why a paired t-test over seeds: a seed fixes the data order, the initialisation and the jitter noise,
and both rows of a comparison ran the same seeds, so the per-seed differences cancel what the seed does
to both (the larger part of the spread); what is left is tested against 0. Only seeds that both rows
completed are used; with fewer than two the difference is "not testable". A bootstrap over test images
would measure the test set's sampling noise instead, which is not what changes between reruns here.
Pure functions of numbers; scipy gives the t distribution's quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scipy import stats as _st

ALPHA = 0.05
SIGNIFICANT, NOT_SIGNIFICANT, NOT_TESTABLE = "significant", "not significant", "not testable"


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Two-sided t-interval of the mean (n − 1 degrees of freedom); None for fewer than two values."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 2:
        return None
    mean = math.fsum(xs) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of ``a − b`` over the seeds both have."""

    n: int  # shared seeds
    mean_diff: float | None  # mean of a − b over the shared seeds
    t: float | None
    p: float | None  # two-sided
    verdict: str  # SIGNIFICANT, NOT_SIGNIFICANT or NOT_TESTABLE (at ALPHA)


def paired_t_test(a: Mapping[int, float], b: Mapping[int, float], alpha: float = ALPHA) -> PairedTest:
    """Paired t-test over the keys (seeds) of ``a`` and ``b`` that both hold.

    t = mean(d) / (sd(d) / √n) with n − 1 degrees of freedom, d = a − b per seed. When every difference is
    the same, the seeds add no noise: p = 1 if that difference is 0, else p = 0.
    """
    seeds = sorted(set(a) & set(b))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    if n < 2:
        return PairedTest(n, diffs[0] if diffs else None, None, None, NOT_TESTABLE)
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0.0 or sd <= 1e-12 * max(1.0, abs(mean)):
        t, p = (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / (sd / math.sqrt(n))
        p = float(2 * _st.t.sf(abs(t), n - 1))
    return PairedTest(n, mean, t, p, SIGNIFICANT if p < alpha else NOT_SIGNIFICANT)


def welch_t_test(a: Iterable[float], b: Iterable[float], alpha: float = ALPHA) -> PairedTest:
    """Welch's t-test of mean(a) − mean(b) for two rows that share fewer than two seeds (unequal
    variances, Welch–Satterthwaite degrees of freedom); "not testable" when either has fewer than two
    values. ``n`` is the smaller sample."""
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    n = min(len(xs), len(ys))
    diff = (math.fsum(xs) / len(xs) - math.fsum(ys) / len(ys)) if xs and ys else None
    if n < 2:
        return PairedTest(n, diff, None, None, NOT_TESTABLE)
    va = math.fsum((x - math.fsum(xs) / len(xs)) ** 2 for x in xs) / (len(xs) - 1) / len(xs)
    vb = math.fsum((y - math.fsum(ys) / len(ys)) ** 2 for y in ys) / (len(ys) - 1) / len(ys)
    if math.sqrt(va + vb) <= 1e-12 * max(1.0, abs(diff)):
        t, p = (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
    else:
        t = diff / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(xs) - 1) + vb**2 / (len(ys) - 1))
        p = float(2 * _st.t.sf(abs(t), df))
    return PairedTest(n, diff, t, p, SIGNIFICANT if p < alpha else NOT_SIGNIFICANT)


def beats(best: Mapping[int, float], other: Mapping[int, float], higher: bool, alpha: float = ALPHA) -> bool:
    """Whether the row with per-seed values ``best`` is better than ``other`` beyond seed noise: a paired
    t-test over the seeds both completed (as against the default row), Welch's t-test when they share
    fewer than two, significant at ``alpha`` and in the better direction. False when either row has
    fewer than two seeds (one value shows no seed noise to beat)."""
    shared = set(best) & set(other)
    if len(shared) >= 2:
        test = paired_t_test(best, other, alpha)
    else:
        test = welch_t_test(best.values(), other.values(), alpha)
    if test.verdict != SIGNIFICANT or test.mean_diff is None:
        return False
    return test.mean_diff > 0 if higher else test.mean_diff < 0
