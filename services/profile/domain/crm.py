"""The built-in CRM metrics of a profile, computed from its timeline (pure).

Event names follow the canonical catalogue in schemas/ (Segment's e-commerce and
support conventions). Every metric is recomputed from the de-duplicated timeline,
so merges and unmerges never count an event twice.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.profile.domain.timeline import TimelineEvent

ORDER, REFUND = "Order Completed", "Order Refunded"
TICKET_OPENED, TICKET_RESOLVED = "Ticket Opened", "Ticket Resolved"
SURVEY = "Survey Responded"
# the event catalogue's social touchpoints (schemas/events/)
SOCIAL = frozenset({"Mention Posted", "Account Followed", "Comment Posted", "Direct Message Received"})
SESSION_GAP = timedelta(minutes=30)  # page views further apart than this start a new visit


@dataclass(frozen=True)
class CrmSettings:
    reporting_currency: str = "USD"
    # units of reporting currency per unit of each currency
    exchange_rates: Mapping[str, float] = field(default_factory=lambda: {"USD": 1.0})
    expected_lifetime_years: float = 3.0


def nps_category(score: float | None) -> str | None:
    if score is None:
        return None
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def channel_of(event: TimelineEvent) -> str:
    """Where an event happened: its context.channel, else what its kind implies."""
    if event.channel:
        return event.channel
    if event.name in SOCIAL:
        return "social"
    if event.name in (ORDER, REFUND):
        return "shop"
    if event.name in (TICKET_OPENED, TICKET_RESOLVED, SURVEY) or (event.name or "").startswith("Ticket"):
        return "helpdesk"
    return "mobile" if event.type == "screen" else "web"


def amount(event: TimelineEvent, settings: CrmSettings) -> float | None:
    """The event's revenue (or total) in the reporting currency; None if unconvertible."""
    value = event.properties.get("revenue", event.properties.get("total"))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    rate = settings.exchange_rates.get(str(event.properties.get("currency") or settings.reporting_currency).upper())
    return None if rate is None else float(value) * rate


def visits(events: Sequence[TimelineEvent]) -> int:
    views = sorted(e.at for e in events if e.type in ("page", "screen"))
    return sum(1 for i, at in enumerate(views) if i == 0 or at - views[i - 1] > SESSION_GAP)


def open_tickets(events: Sequence[TimelineEvent]) -> int:
    state: dict[Any, bool] = {}
    for event in sorted(events, key=lambda e: (e.at, e.message_id)):
        ticket = event.properties.get("ticket_id")
        if ticket is not None and event.name in (TICKET_OPENED, TICKET_RESOLVED):
            state[ticket] = event.name == TICKET_OPENED
    return sum(state.values())


def _named(events: Sequence[TimelineEvent], name: str) -> list[TimelineEvent]:
    return sorted((e for e in events if e.name == name), key=lambda e: (e.at, e.message_id))


def _scores(surveys: list[TimelineEvent], key: str) -> list[float]:
    return [float(e.properties[key]) for e in surveys
            if isinstance(e.properties.get(key), (int, float)) and not isinstance(e.properties[key], bool)]


def crm_metrics(events: Sequence[TimelineEvent], now: datetime, settings: CrmSettings) -> dict[str, Any]:
    orders, refunds = _named(events, ORDER), _named(events, REFUND)
    revenue = round(sum(a for e in orders if (a := amount(e, settings)) is not None), 2)
    refunded = round(sum(a for e in refunds if (a := amount(e, settings)) is not None), 2)
    surveys = _named(events, SURVEY)
    nps, csat = _scores(surveys, "nps"), _scores(surveys, "csat")
    first = min((e.at for e in events), default=None)
    metrics = {
        "first_seen": first, "last_seen": max((e.at for e in events), default=None),
        "visits": visits(events), "orders": len(orders), "revenue": revenue,
        "average_order_value": round(revenue / len(orders), 2) if orders else None,
        "last_order_at": orders[-1].at if orders else None,
        "days_since_last_order": (now - orders[-1].at).days if orders else None,
        "refunds": len(refunds), "refunded_amount": refunded,
        "clv_historic": round(revenue - refunded, 2),
        "open_support_tickets": open_tickets(events),
        "last_nps_score": nps[-1] if nps else None, "nps_category": nps_category(nps[-1] if nps else None),
        "csat_average": round(sum(csat) / len(csat), 2) if csat else None,
        "social_engagement": sum(1 for e in events if e.name in SOCIAL),
        "preferred_channel": _preferred_channel(events),
        "reporting_currency": settings.reporting_currency,
    }
    risk = churn_risk(metrics, orders, now)
    metrics["churn_risk"], metrics["churn_risk_inputs"] = risk.score, risk.inputs
    metrics["clv_predicted"] = predicted_clv(metrics, orders, now, risk.score, settings)
    return metrics


def _preferred_channel(events: Sequence[TimelineEvent]) -> str | None:
    ranked = Counter(channel_of(e) for e in events).most_common()
    return min((c for c, n in ranked if n == ranked[0][1])) if ranked else None


@dataclass(frozen=True)
class ChurnRisk:
    score: float  # 0 (safe) .. 1 (gone)
    inputs: dict[str, float]  # each input's contribution to the score


def churn_risk(metrics: Mapping[str, Any], orders: list[TimelineEvent], now: datetime) -> ChurnRisk:
    """An explainable score: lateness against the customer's own order rhythm, open tickets
    and a detractor NPS, capped at 1. Contributions are returned so a marketer sees why."""
    inputs: dict[str, float] = {}
    if orders:
        gaps = [(b.at - a.at).days for a, b in zip(orders, orders[1:])]
        usual_gap = max(sum(gaps) / len(gaps), 14.0) if gaps else 60.0
        inputs["overdue"] = round(min(max(metrics["days_since_last_order"] / usual_gap - 1, 0) / 2, 0.6), 3)
    elif metrics["last_seen"] is not None:
        inputs["inactive"] = round(min((now - metrics["last_seen"]).days / 90, 1.0) * 0.6, 3)
    inputs["open_tickets"] = round(min(metrics["open_support_tickets"] * 0.1, 0.2), 3)
    inputs["detractor"] = 0.2 if metrics["nps_category"] == "detractor" else 0.0
    return ChurnRisk(round(min(sum(inputs.values()), 1.0), 3), inputs)


def predicted_clv(metrics: Mapping[str, Any], orders: list[TimelineEvent], now: datetime,
                  risk: float, settings: CrmSettings) -> float | None:
    """Historic CLV plus average order value x yearly order rate x expected remaining years,
    discounted by the churn risk. Tenure under a month counts as a month."""
    if not orders:
        return None
    tenure_years = max((now - orders[0].at).days / 365.25, 1 / 12)
    yearly_orders = len(orders) / tenure_years
    future = metrics["average_order_value"] * yearly_orders * settings.expected_lifetime_years * (1 - risk)
    return round(metrics["clv_historic"] + future, 2)


def rfm_score(recency_days: float | None, frequency: int, monetary: float,
              cuts: Mapping[str, Sequence[float]]) -> dict[str, int] | None:
    """Quintile scores 1..5 against population cut points (4 per dimension); recent is better."""
    if recency_days is None or not cuts:
        return None
    def quintile(value: float, points: Sequence[float]) -> int:
        return 1 + sum(1 for p in points if value > p)
    return {"recency": 6 - quintile(recency_days, cuts["recency"]),
            "frequency": quintile(frequency, cuts["frequency"]),
            "monetary": quintile(monetary, cuts["monetary"])}


def quintile_cuts(values: Sequence[float]) -> list[float]:
    """The 20th, 40th, 60th and 80th percentiles (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[min(len(ordered) - 1, int(len(ordered) * q / 5))] for q in range(1, 5)]
