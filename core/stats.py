"""The statistics of the effect report: pure functions of counts (no I/O).

A journey's treated customers (written to) and its control group (held out, same clock) each
have ``customers`` and ``converted``; what the journey added is the difference of the two
conversion rates. Its 95 % interval is Newcombe's hybrid score interval (Newcombe 1998,
method 10: Wilson score intervals of each rate, combined), which keeps its coverage at 0 and
100 % conversion and with small or unequal groups, where the textbook Wald interval fails.
The p-value is the two-proportion z-test with a pooled variance (two-sided), the test Braze
and most A/B tools report; it equals the chi-squared test of the 2x2 table without
continuity correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from scipy.stats import binomtest, chi2, norm

CONFIDENCE = 0.95
# Below this many customers in either group the verdict says it cannot tell yet: the
# z-test's normal approximation is poor and the interval spans most of what is possible.
MIN_CUSTOMERS = 30


@dataclass(frozen=True)
class Group:
    customers: int
    converted: int
    orders: int = 0
    revenue: Decimal = Decimal(0)

    @property
    def rate(self) -> float | None:
        return self.converted / self.customers if self.customers else None

    @property
    def revenue_per_customer(self) -> Decimal | None:
        if not self.customers:
            return None
        return (self.revenue / self.customers).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Lift:
    absolute: float  # treated rate minus control rate
    relative: float | None  # absolute / control rate (None: the control never converted)
    ci95: tuple[float, float]  # Newcombe's hybrid score interval of ``absolute``
    p_value: float  # two-proportion z-test, two-sided
    incremental_orders: float  # orders the journey added among the treated
    incremental_revenue: Decimal  # revenue it added among the treated


def wilson(converted: int, customers: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of one rate (scipy's)."""
    ci = binomtest(converted, customers).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_interval(
    treated: Group, control: Group, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for treated rate minus control rate."""
    p1, p2 = treated.converted / treated.customers, control.converted / control.customers
    l1, u1 = wilson(treated.converted, treated.customers, confidence)
    l2, u2 = wilson(control.converted, control.customers, confidence)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def z_test(treated: Group, control: Group) -> float:
    """Two-sided p-value of the pooled two-proportion z-test. Where both groups converted
    all or none, there is no difference to find: 1.0."""
    n1, n2 = treated.customers, control.customers
    pooled = (treated.converted + control.converted) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (treated.converted / n1 - control.converted / n2) / se
    return float(2 * norm.sf(abs(z)))


def lift(treated: Group, control: Group) -> Lift | None:
    """What the journey added, or None when either group is empty (no comparison)."""
    if not treated.customers or not control.customers:
        return None
    p1, p2 = treated.converted / treated.customers, control.converted / control.customers
    n1, n2 = treated.customers, control.customers
    extra_revenue = (treated.revenue / n1 - control.revenue / n2) * n1
    return Lift(
        absolute=p1 - p2,
        relative=(p1 - p2) / p2 if p2 else None,
        ci95=newcombe_interval(treated, control),
        p_value=z_test(treated, control),
        incremental_orders=(treated.orders / n1 - control.orders / n2) * n1,
        incremental_revenue=extra_revenue.quantize(Decimal("0.01")),
    )


def verdict(treated: Group, control: Group, found: Lift | None) -> str:
    """The finding in plain words."""
    if found is None:
        if not treated.customers and not control.customers:
            return "no customers entered yet"
        return "no control group: the rates alone, no comparison"
    if min(treated.customers, control.customers) < MIN_CUSTOMERS:
        return "not enough customers yet to tell"
    if found.p_value < 1 - CONFIDENCE:
        more = "more" if found.absolute > 0 else "less"
        return f"significant at 95 %: the journey's customers bought {more} than the control"
    return "no difference shown at 95 %"


# -- A/B tests: variants of one step -------------------------------------------------------


def chi_squared(groups: list[tuple[int, int]]) -> float:
    """p-value of Pearson's chi-squared test that k groups of (hits, trials) share one rate
    (the k x 2 table, no continuity correction, k - 1 degrees of freedom). With two groups it
    is the pooled two-proportion z-test. Where the table has nothing to compare (fewer than
    two groups with trials, or every trial a hit, or none): 1.0."""
    filled = [(hits, n) for hits, n in groups if n > 0]
    if len(filled) < 2:
        return 1.0
    total = sum(n for _, n in filled)
    hits = sum(h for h, _ in filled)
    if hits in (0, total):
        return 1.0
    rate = hits / total
    stat = sum(
        (h - n * rate) ** 2 / (n * rate) + ((n - h) - n * (1 - rate)) ** 2 / (n * (1 - rate))
        for h, n in filled
    )
    return float(chi2.sf(stat, len(filled) - 1))


def best_variant(groups: dict[str, tuple[int, int]]) -> str | None:
    """The variant with the highest rate of hits per trial (ties: the first listed); None
    when no variant had a trial."""
    rated = {name: h / n for name, (h, n) in groups.items() if n > 0}
    return max(rated, key=lambda name: rated[name]) if rated else None


def ab_verdict(p_value: float, smallest: int) -> str:
    """An A/B test's finding in plain words (``smallest``: the fewest trials of a variant)."""
    if smallest < MIN_CUSTOMERS:
        return "not enough sends yet to tell"
    if p_value < 1 - CONFIDENCE:
        return "the variants differ, significant at 95 %"
    return "no difference shown at 95 %"
