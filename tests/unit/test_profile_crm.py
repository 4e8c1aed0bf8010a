"""The built-in CRM metrics, from a timeline."""
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from services.profile.domain.crm import (CrmSettings, crm_metrics, nps_category, quintile_cuts,
                                         rfm_score)
from services.profile.domain.timeline import TimelineEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CRM = CrmSettings("USD", {"USD": 1.0, "EUR": 1.1}, expected_lifetime_years=2)


def event(i, day, name=None, type="track", channel=None, **properties):
    return TimelineEvent(f"m{i}", type, name, T0 + timedelta(days=day), properties, None, channel)


TIMELINE = [
    event(1, 0, type="page"), event(2, 0.01, type="page"), event(3, 3, type="page"),
    event(4, 5, "Order Completed", revenue=100, currency="USD"),
    event(5, 35, "Order Completed", revenue=50, currency="EUR"),
    event(6, 36, "Order Refunded", total=20, currency="USD"),
    event(7, 40, "Ticket Opened", ticket_id="t1"), event(8, 41, "Ticket Opened", ticket_id="t2"),
    event(9, 42, "Ticket Resolved", ticket_id="t1"),
    event(10, 43, "Survey Responded", nps=9, csat=4), event(11, 44, "Survey Responded", nps=3, csat=2),
    event(12, 45, "Mention Posted", platform="x"), event(13, 46, "Account Followed", platform="x"),
]


def test_the_crm_metrics_of_a_customer():
    m = crm_metrics(TIMELINE, T0 + timedelta(days=65), CRM)
    assert (m["visits"], m["orders"], m["revenue"], m["average_order_value"]) == (2, 2, 155.0, 77.5)
    assert (m["refunds"], m["refunded_amount"], m["clv_historic"]) == (1, 20.0, 135.0)
    assert m["last_order_at"] == T0 + timedelta(days=35) and m["days_since_last_order"] == 30
    assert (m["open_support_tickets"], m["last_nps_score"], m["nps_category"]) == (1, 3.0, "detractor")
    assert (m["csat_average"], m["social_engagement"]) == (3.0, 2)
    assert m["first_seen"] == T0 and m["last_seen"] == T0 + timedelta(days=46)
    assert m["preferred_channel"] == "helpdesk"  # five ticket and survey events beat three page views


def test_churn_risk_is_explained_by_its_inputs():
    m = crm_metrics(TIMELINE, T0 + timedelta(days=65), CRM)
    assert m["churn_risk"] == round(sum(m["churn_risk_inputs"].values()), 3)
    assert m["churn_risk_inputs"]["detractor"] == 0.2 and m["churn_risk_inputs"]["open_tickets"] == 0.1
    later = crm_metrics(TIMELINE, T0 + timedelta(days=200), CRM)
    assert later["churn_risk"] > m["churn_risk"]  # lateness against their rhythm raises it


def test_predicted_clv_adds_expected_future_orders_discounted_by_risk():
    m = crm_metrics(TIMELINE, T0 + timedelta(days=65), CRM)
    tenure_years = 60 / 365.25
    future = 77.5 * (2 / tenure_years) * 2 * (1 - m["churn_risk"])
    assert m["clv_predicted"] == round(135.0 + future, 2)


def test_unknown_currencies_are_left_out_of_revenue():
    m = crm_metrics([event(1, 0, "Order Completed", revenue=10, currency="JPY")], T0, CRM)
    assert m["orders"] == 1 and m["revenue"] == 0


def test_a_visitor_without_orders_has_no_order_metrics():
    m = crm_metrics([event(1, 0, type="page")], T0 + timedelta(days=45), CRM)
    assert m["orders"] == 0 and m["average_order_value"] is None and m["clv_predicted"] is None
    assert m["churn_risk_inputs"]["inactive"] == 0.3


def test_nps_categories():
    assert [nps_category(s) for s in (10, 9, 8, 7, 6, 0, None)] == [
        "promoter", "promoter", "passive", "passive", "detractor", "detractor", None]


def test_rfm_scores_place_a_customer_in_population_quintiles():
    cuts = {"recency": quintile_cuts(range(1, 101)), "frequency": quintile_cuts(range(1, 101)),
            "monetary": quintile_cuts(range(1, 101))}
    assert rfm_score(5, 95, 50, cuts) == {"recency": 5, "frequency": 5, "monetary": 3}
    assert rfm_score(95, 5, 100, cuts) == {"recency": 1, "frequency": 1, "monetary": 5}
    assert rfm_score(None, 0, 0, cuts) is None


@given(st.lists(st.integers(0, 3 * 10**13), min_size=1, max_size=8), st.integers(-10**12, 10**14))
def test_order_days_count_whole_days_as_datetimes_do(order_offsets_us, now_offset_us):
    """Order times stay integers (microseconds) in the metrics: their days must be the
    whole days datetime arithmetic gives, late and early clocks included."""
    orders = sorted(T0 + timedelta(microseconds=o) for o in order_offsets_us)
    now = orders[-1] + timedelta(microseconds=now_offset_us)
    timeline = [event(i, (at - T0) / timedelta(days=1), "Order Completed", revenue=10) for i, at in enumerate(orders)]
    timeline = [TimelineEvent(e.message_id, e.type, e.name, at, e.properties, None, None)
                for e, at in zip(timeline, orders)]  # the exact times, not days as floats
    m = crm_metrics(timeline, now, CRM)
    assert m["last_order_at"] == orders[-1] and m["days_since_last_order"] == (now - orders[-1]).days
    gaps = [(b - a).days for a, b in zip(orders, orders[1:])]
    usual_gap = max(sum(gaps) / len(gaps), 14.0) if gaps else 60.0
    assert m["churn_risk_inputs"]["overdue"] == round(min(max((now - orders[-1]).days / usual_gap - 1, 0) / 2, 0.6), 3)
    tenure_years = max((now - orders[0]).days / 365.25, 1 / 12)
    future = m["average_order_value"] * (len(orders) / tenure_years) * 2 * (1 - m["churn_risk"])
    assert m["clv_predicted"] == round(m["clv_historic"] + future, 2)
