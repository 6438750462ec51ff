"""Statistics for paired right / wrong outcomes: two models scored on the same (prompt, seed) clips.

Only the discordant pairs (right for one model alone) carry information about the difference
between the two models; every function here works from their counts.

* ``mcnemar_p``: McNemar's exact two-sided test (the discordant split against Binomial(n, 1/2)).
* ``tango_interval``: the asymptotic score interval for the difference of two paired proportions
  (Tango 1998, "Equivalence test and confidence interval for the difference in proportions for the
  paired-sample design", Stat. Med. 17:891-908), one of the intervals Fagerland, Lydersen & Laake
  (2014, Stat. Med. 33:2850-2875) recommend for paired binary data. Unlike the Wald or a bootstrap
  interval it does not collapse to a point when no pair is discordant.
* ``paired_binary``: both of the above for two aligned lists of outcomes (``PairedBinary``).
* ``bootstrap_mean_ci``: a seeded percentile bootstrap of a mean (descriptive intervals of
  ``stunet compare``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

SIGNIFICANCE = 0.05           # a paired difference is called a loss / gain when McNemar's exact p is below this
LEVEL = 0.95                  # confidence level of the intervals
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value for paired right / wrong outcomes: ``only_a`` pairs right for A alone,
    ``only_b`` for B alone (the discordant pairs; under no difference each is Binomial(n, 1/2))."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def _tango_score(only_a: int, only_b: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: p(A right) - p(B right) = ``delta``.

    With b = ``only_a``, c = ``only_b``: T = (b - c - n delta) / sqrt(n (2 q + delta (1 - delta))), where q is
    the maximum-likelihood probability of a B-only pair under the constraint (the positive root of
    2n q^2 + W q - c delta (1 - delta) = 0, W = -b - c + (2n - b + c) delta). T falls as delta grows.
    """
    b, c = only_a, only_b
    num = b - c - n * delta
    w = -b - c + (2 * n - b + c) * delta
    q = (-w + math.sqrt(max(0.0, w * w + 8.0 * n * c * delta * (1.0 - delta)))) / (4.0 * n)
    var = n * (2.0 * q + delta * (1.0 - delta))
    if var <= 0.0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(only_a: int, only_b: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Tango's score interval for p(A right) - p(B right) (fractions in [-1, 1]) from ``n`` pairs of which
    ``only_a`` are right for A alone and ``only_b`` for B alone: every delta whose score statistic is within
    the normal quantile, found by bisection (the statistic is monotone in delta)."""
    if n < 1 or only_a < 0 or only_b < 0 or only_a + only_b > n:
        raise ValueError(f"need 0 <= only_a + only_b <= n and n >= 1 (got {only_a}, {only_b}, {n})")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    est = (only_a - only_b) / n

    def root(lo: float, hi: float, target: float) -> float:     # T(lo) >= target >= T(hi)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if _tango_score(only_a, only_b, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    eps = 1e-12
    lower = -1.0 if _tango_score(only_a, only_b, n, -1.0 + eps) <= z else root(-1.0 + eps, est, z)
    upper = 1.0 if _tango_score(only_a, only_b, n, 1.0 - eps) >= -z else root(est, 1.0 - eps, -z)
    return lower, upper


@dataclass(frozen=True)
class PairedBinary:
    """A against B on the same items. Percentages and points are 0-100; ``ci95`` is Tango's interval of
    ``difference`` (A - B) in points, ``p`` McNemar's exact p."""
    pairs: int
    a_pct: float
    b_pct: float
    only_a: int
    only_b: int
    difference: float
    ci95: tuple[float, float]
    p: float

    def __post_init__(self):
        if self.pairs < 1 or self.only_a + self.only_b > self.pairs:
            raise ValueError(f"PairedBinary: {self.only_a} + {self.only_b} discordant pairs of {self.pairs}")


def paired_binary(a: Sequence[bool], b: Sequence[bool], level: float = LEVEL) -> PairedBinary:
    """The paired comparison of two aligned right / wrong lists (item i of ``a`` pairs with item i of ``b``)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_binary needs two non-empty lists of the same length ({len(a)}, {len(b)})")
    x, y = [bool(v) for v in a], [bool(v) for v in b]
    n = len(x)
    only_a = sum(u and not v for u, v in zip(x, y))
    only_b = sum(v and not u for u, v in zip(x, y))
    lo, hi = tango_interval(only_a, only_b, n, level)
    return PairedBinary(pairs=n, a_pct=100.0 * sum(x) / n, b_pct=100.0 * sum(y) / n, only_a=only_a, only_b=only_b,
                        difference=100.0 * (only_a - only_b) / n, ci95=(100.0 * lo, 100.0 * hi),
                        p=mcnemar_p(only_a, only_b))


def bootstrap_mean_ci(values, rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES,
                      level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with ``rng``, so a seeded generator
    gives the same interval every run)."""
    v = np.asarray(values, float)
    means = v[rng.integers(0, len(v), (resamples, len(v)))].mean(1)
    tail = 100.0 * (1.0 - level) / 2.0
    return float(np.percentile(means, tail)), float(np.percentile(means, 100.0 - tail))
