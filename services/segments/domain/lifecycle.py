"""Lifecycle stages (pure): where a profile stands in the customer lifecycle, and why.

    visitor (awareness) -> lead (acquisition) -> customer (conversion) -> repeat (retention)
    -> loyal (loyalty and advocacy); at_risk and churned for customers who lapse.

The stage is read off the profile's traits and computed CRM metrics, so it changes with
events and, for lapses, on time (the profile service recomputes days since the last
order daily). Thresholds are configurable; the defaults are below.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

STAGES = ("visitor", "lead", "customer", "repeat", "loyal", "at_risk", "churned")
FUNNEL = ("visitor", "lead", "customer", "repeat", "loyal")


@dataclass(frozen=True)
class LifecycleRules:
    loyal_orders: int = 5  # or 2+ orders and a promoter NPS, or social advocacy
    advocacy_engagements: int = 3
    at_risk_days: int = 90  # no order for this long
    churned_days: int = 180
    lead_traits: tuple[str, ...] = ("email", "phone")


@dataclass(frozen=True)
class Stage:
    name: str
    why: str


def stage_of(traits: Mapping[str, Any], computed: Mapping[str, Any], rules: LifecycleRules) -> Stage:
    orders = computed.get("orders") or 0
    quiet = computed.get("days_since_last_order")
    if orders and quiet is not None and quiet >= rules.churned_days:
        return Stage("churned", f"no order for {quiet} days (>= {rules.churned_days})")
    if orders and quiet is not None and quiet >= rules.at_risk_days:
        return Stage("at_risk", f"no order for {quiet} days (>= {rules.at_risk_days})")
    if orders >= rules.loyal_orders:
        return Stage("loyal", f"{orders} orders (>= {rules.loyal_orders})")
    if orders >= 2 and computed.get("nps_category") == "promoter":
        return Stage("loyal", f"{orders} orders and an NPS promoter")
    if orders >= 2 and (computed.get("social_engagement") or 0) >= rules.advocacy_engagements:
        return Stage("loyal", f"{orders} orders and {computed['social_engagement']} social engagements")
    if orders >= 2:
        return Stage("repeat", f"{orders} orders")
    if orders == 1:
        return Stage("customer", "first order")
    known = [t for t in rules.lead_traits if traits.get(t)]
    if known:
        return Stage("lead", f"known contact ({', '.join(known)})")
    return Stage("visitor", "no contact details or orders yet")


def transition_time(stage: Stage, computed: Mapping[str, Any], last_seen: datetime,
                    rules: LifecycleRules) -> datetime:
    """When the transition happened: the day a lapse crossed its threshold, else the latest
    event (so a replay of the log gives the same times)."""
    last_order = computed.get("last_order_at")
    if stage.name in ("at_risk", "churned") and last_order:
        days = rules.churned_days if stage.name == "churned" else rules.at_risk_days
        return datetime.fromisoformat(last_order.replace("Z", "+00:00")) + timedelta(days=days)
    return last_seen


def funnel(counts_reached: Mapping[str, int]) -> list[dict]:
    """Conversion from each funnel stage to the next, over profiles that ever reached them."""
    rows = []
    for here, there in zip(FUNNEL, FUNNEL[1:]):
        reached = counts_reached.get(here, 0)
        rows.append({"from": here, "to": there, "reached": reached, "converted": counts_reached.get(there, 0),
                     "rate": round(counts_reached.get(there, 0) / reached, 4) if reached else None})
    return rows


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
