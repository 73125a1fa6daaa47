"""What accuracy over a few seeds can and cannot say (scipy.stats does the arithmetic).

- A mean over seeds comes with a 95 % confidence interval from Student's t distribution:
  mean ± t(0.975, n-1) · s / √n. One seed has no interval.
- A difference between two networks is a *finding* only when Welch's two-sample t-test
  (unequal variances; the seeds of two networks are independent draws, not pairs) gives
  p < ``ALPHA``. With fewer than two seeds on either side there is no test and no finding.
- For a difference that is not (yet) a finding, :func:`seeds_needed` estimates how many seeds
  per network a two-sample t-test at ``ALPHA`` would need to detect it with probability
  ``POWER``, taking the observed difference and pooled spread as the truth: the smallest n
  whose power, from the noncentral t distribution, reaches ``POWER`` (Cohen's classic table:
  64 per group for a difference of half a standard deviation). A guide to what to run next,
  not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # the significance level every table states
POWER = 0.8  # the chance of detecting a true difference of the observed size
MAX_SEEDS_SHOWN = 100  # past this, "more than 100" says enough


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % confidence interval (None bounds for a single value)."""

    mean: float
    low: float | None
    high: float | None
    n: int


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent values (seeds)."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, None, None, n)
    sem = stats.sem(values)
    if sem == 0:
        return Interval(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), n)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (None when either side has fewer than 2 values)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if _variance(a) == 0 and _variance(b) == 0:  # no spread at all: equal means or certain
        return 1.0 if math.fsum(a) / len(a) == math.fsum(b) / len(b) else 0.0
    return float(stats.ttest_ind(b, a, equal_var=False).pvalue)


def is_finding(p: float | None) -> bool:
    """Whether a difference with this p-value is reported as real."""
    return p is not None and p < ALPHA


def seeds_needed(a: Sequence[float], b: Sequence[float]) -> int | None:
    """Seeds per network a t-test would need to find the observed difference (see the module
    docstring); None without a spread to go on or without a difference, and
    ``MAX_SEEDS_SHOWN + 1`` past that many."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    delta = abs(math.fsum(b) / len(b) - math.fsum(a) / len(a))
    pooled = (_variance(a) + _variance(b)) / 2
    if delta == 0 or pooled == 0:
        return None
    for n in range(2, MAX_SEEDS_SHOWN + 1):
        dof = 2 * n - 2
        critical = stats.t.ppf(1 - ALPHA / 2, dof)
        shift = delta / math.sqrt(2 * pooled / n)  # the noncentrality of the t statistic
        power = stats.nct.sf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift)
        if power >= POWER:
            return n
    return MAX_SEEDS_SHOWN + 1


def _variance(values: Sequence[float]) -> float:
    n = len(values)
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation of paired values (scipy); None with fewer than 3 pairs or
    when either side is constant (no ranking to compare)."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"paired values of unequal length: {len(a)} and {len(b)}")
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(stats.spearmanr(a, b).statistic)
