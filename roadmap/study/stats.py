"""What accuracy over a few seeds can and cannot say (scipy.stats does the arithmetic).

- A mean over seeds comes with a 95 % confidence interval from Student's t distribution:
  mean ± t(0.975, n-1) · s / √n. One seed has no interval.
- A difference between two networks is a *finding* only when Welch's two-sample t-test
  (unequal variances; the seeds of two networks are independent draws, not pairs) gives
  p < ``ALPHA``. With fewer than two seeds on either side there is no test and no finding.
- Two forms of one network scored on the same images (float32 and its int8 program) are
  paired: only the images one gets right and the other wrong tell them apart. The Δ's 95 %
  interval is the Wald interval for paired proportions, (gained - lost) / n ± 1.96 · √(gained
  + lost - (gained - lost)² / n) / n, and the Δ is a finding when McNemar's exact test (a
  binomial test on the discordant images) gives p < ``ALPHA`` (:func:`paired_delta`).
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


@dataclass(frozen=True)
class PairedDelta:
    """The accuracy difference of two classifiers on the same images (points).

    Attributes:
        delta: second minus first top-1, in points.
        low: the 95 % interval's lower end.
        high: its upper end.
        p_value: McNemar's exact test (1.0 when no image tells them apart).
        images: images scored by both.
    """

    delta: float
    low: float
    high: float
    p_value: float
    images: int

    @property
    def finding(self) -> bool:
        return is_finding(self.p_value)


def paired_delta(lost: int, gained: int, images: int) -> PairedDelta:
    """Δ top-1 of a second classifier against a first on the same ``images``: ``lost`` images
    only the first classifies right, ``gained`` only the second (module docstring)."""
    from scipy import stats

    if images <= 0 or lost < 0 or gained < 0 or lost + gained > images:
        raise ValueError(f"impossible counts: lost {lost}, gained {gained} of {images} images")
    delta = (gained - lost) / images
    spread = math.sqrt(max(gained + lost - (gained - lost) ** 2 / images, 0.0)) / images
    z = stats.norm.ppf(0.975)
    discordant = lost + gained
    p = float(stats.binomtest(gained, discordant, 0.5).pvalue) if discordant else 1.0
    return PairedDelta(100 * delta, 100 * (delta - z * spread), 100 * (delta + z * spread),
                       p, images)  # fmt: skip


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
