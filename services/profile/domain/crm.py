"""The built-in CRM metrics of a profile, from its timeline (pure).

Event names follow the canonical catalogue in schemas/ (Segment's e-commerce and
support conventions). The timeline is folded into a state (`crm_start`, `crm_add`) whose
result doesn't depend on the order of the events, kept as a running state per profile
(summary.py) and folded again from the de-duplicated timeline after a merge or an unmerge,
so no event counts twice; the metrics are read off the state at a moment (`metrics_of`).
"""
from __future__ import annotations

from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.profile.domain.folds import (MICROSECOND, add_exact, count_in, exact_value, is_number, key_of, latest,
                                           micros, moment, most_frequent)
from services.profile.domain.timeline import TimelineEvent

ORDER, REFUND = "Order Completed", "Order Refunded"
TICKET_OPENED, TICKET_RESOLVED = "Ticket Opened", "Ticket Resolved"
SURVEY = "Survey Responded"
# the event catalogue's social touchpoints (schemas/events/)
SOCIAL = frozenset({"Mention Posted", "Account Followed", "Comment Posted", "Direct Message Received"})
DAY = timedelta(days=1) // MICROSECOND
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


def crm_start() -> dict[str, Any]:
    """The state of no events: what the metrics need, each part order-independent (JSON)."""
    return {"seen": None, "visits": [], "orders": [], "revenue": "0", "refunds": 0, "refunded": "0",
            "tickets": {}, "nps": None, "csat": ["0", 0], "social": 0, "channels": {}}


def crm_add(state: dict[str, Any], event: TimelineEvent, settings: CrmSettings) -> None:
    at, name = micros(event.at), event.name
    state["seen"] = [at, at] if state["seen"] is None else [min(state["seen"][0], at), max(state["seen"][1], at)]
    if event.type in ("page", "screen"):
        state["visits"] = add_view(state["visits"], at)
    if name in (ORDER, REFUND):
        total = "revenue" if name == ORDER else "refunded"
        if (value := amount(event, settings)) is not None:
            state[total] = add_exact(state[total], value)
        if name == ORDER:
            insort(state["orders"], at)
        else:
            state["refunds"] += 1
    ticket = event.properties.get("ticket_id")
    if ticket is not None and name in (TICKET_OPENED, TICKET_RESOLVED):
        key = key_of(ticket)  # a ticket is open as its latest event says
        state["tickets"][key] = latest(state["tickets"].get(key), [at, event.message_id, name == TICKET_OPENED])
    if name == SURVEY:
        _add_survey(state, event, at)
    if name in SOCIAL:
        state["social"] += 1
    count_in(state["channels"], channel_of(event))


def _add_survey(state: dict[str, Any], event: TimelineEvent, at: int) -> None:
    nps, csat = event.properties.get("nps"), event.properties.get("csat")
    if is_number(nps):
        state["nps"] = latest(state["nps"], [at, event.message_id, float(nps)])
    if is_number(csat):
        state["csat"] = [add_exact(state["csat"][0], float(csat)), state["csat"][1] + 1]


def add_view(visits: list[list[int]], at: int) -> list[list[int]]:
    """Visits as [first view, last view], the views of one at most SESSION_GAP apart: a view
    within the gap of one or two visits joins them."""
    gap = SESSION_GAP // MICROSECOND
    near = [v for v in visits if v[0] - gap <= at <= v[1] + gap]
    joined = [min([at] + [v[0] for v in near]), max([at] + [v[1] for v in near])]
    return sorted([v for v in visits if v not in near] + [joined])


def _rounded(total: str, places: int) -> float | int:
    return round(exact_value(total), places) if total != "0" else 0


def crm_metrics(events: Sequence[TimelineEvent], now: datetime, settings: CrmSettings) -> dict[str, Any]:
    state = crm_start()
    for event in events:
        crm_add(state, event, settings)
    return metrics_of(state, now, settings)


def metrics_of(state: dict[str, Any], now: datetime, settings: CrmSettings) -> dict[str, Any]:
    orders = state["orders"]  # microseconds, sorted: days between them as integers (a datetime each cost more)
    today = micros(now)
    revenue, refunded = _rounded(state["revenue"], 2), _rounded(state["refunded"], 2)
    nps = state["nps"][2] if state["nps"] else None
    csat_total, surveys = state["csat"]
    seen = [moment(at) for at in state["seen"]] if state["seen"] else [None, None]
    metrics = {
        "first_seen": seen[0], "last_seen": seen[1],
        "visits": len(state["visits"]), "orders": len(orders), "revenue": revenue,
        "average_order_value": round(revenue / len(orders), 2) if orders else None,
        "last_order_at": moment(orders[-1]) if orders else None,
        "days_since_last_order": (today - orders[-1]) // DAY if orders else None,
        "refunds": state["refunds"], "refunded_amount": refunded,
        "clv_historic": round(revenue - refunded, 2),
        "open_support_tickets": sum(1 for *_, is_open in state["tickets"].values() if is_open),
        "last_nps_score": nps, "nps_category": nps_category(nps),
        "csat_average": round(exact_value(csat_total, surveys), 2) if surveys else None,
        "social_engagement": state["social"],
        "preferred_channel": most_frequent(state["channels"]),
        "reporting_currency": settings.reporting_currency,
    }
    risk = churn_risk(metrics, orders, now)
    metrics["churn_risk"], metrics["churn_risk_inputs"] = risk.score, risk.inputs
    metrics["clv_predicted"] = predicted_clv(metrics, orders, today, risk.score, settings)
    return metrics


@dataclass(frozen=True)
class ChurnRisk:
    score: float  # 0 (safe) .. 1 (gone)
    inputs: dict[str, float]  # each input's contribution to the score


def churn_risk(metrics: Mapping[str, Any], orders: list[int], now: datetime) -> ChurnRisk:
    """An explainable score: lateness against the customer's own order rhythm, open tickets
    and a detractor NPS, capped at 1. Contributions are returned so a marketer sees why.
    `orders`: their times in microseconds, sorted."""
    inputs: dict[str, float] = {}
    if orders:
        gaps = [(b - a) // DAY for a, b in zip(orders, orders[1:])]  # whole days, as timedelta.days
        usual_gap = max(sum(gaps) / len(gaps), 14.0) if gaps else 60.0
        inputs["overdue"] = round(min(max(metrics["days_since_last_order"] / usual_gap - 1, 0) / 2, 0.6), 3)
    elif metrics["last_seen"] is not None:
        inputs["inactive"] = round(min((now - metrics["last_seen"]).days / 90, 1.0) * 0.6, 3)
    inputs["open_tickets"] = round(min(metrics["open_support_tickets"] * 0.1, 0.2), 3)
    inputs["detractor"] = 0.2 if metrics["nps_category"] == "detractor" else 0.0
    return ChurnRisk(round(min(sum(inputs.values()), 1.0), 3), inputs)


def predicted_clv(metrics: Mapping[str, Any], orders: list[int], today: int,
                  risk: float, settings: CrmSettings) -> float | None:
    """Historic CLV plus average order value x yearly order rate x expected remaining years,
    discounted by the churn risk. Tenure under a month counts as a month."""
    if not orders:
        return None
    tenure_years = max((today - orders[0]) // DAY / 365.25, 1 / 12)
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
