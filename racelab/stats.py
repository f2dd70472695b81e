"""Small statistics for trial counts, with the standard library only."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

__all__ = ["loss_rate", "wilson_interval"]

# The outcomes in which pausing was exercised and the session ended, so
# that "did bytes go missing?" has a yes-or-no answer.
CONCLUSIVE = ("clean", "loss", "corrupt")


def wilson_interval(
    successes: int, trials: int, z: float = 1.959964
) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% default).

    Unlike the normal approximation it stays inside [0, 1] and is honest
    for 0 of 10 or 10 of 10, the counts small experiments produce.

    Raises:
      ValueError: counts are negative or *successes* exceeds *trials*.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(
            f"need 0 <= successes <= trials (got {successes} of {trials})"
        )
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = (
        z
        * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
        / (1 + z2 / trials)
    )
    return (max(0.0, centre - half), min(1.0, centre + half))


def loss_rate(outcomes: Iterable[str]) -> dict[str, float | int]:
    """Share of conclusive trials that lost bytes, with its 95% interval.

    Only ``clean``, ``loss`` and ``corrupt`` trials count: a ``hang`` or
    an ``error`` did not finish, and an ``inconclusive`` one never paused.

    Returns:
      ``{"lossy": k, "conclusive": n, "rate": k/n, "low": .., "high": ..}``
      (rate is None when no trial was conclusive).
    """
    counts = Counter(outcomes)
    n = sum(counts[o] for o in CONCLUSIVE)
    k = counts["loss"]
    low, high = wilson_interval(k, n)
    return {
        "lossy": k,
        "conclusive": n,
        "rate": k / n if n else None,
        "low": low,
        "high": high,
    }
