"""Windowed computed traits go down on time, driven by the ticker with a controllable clock."""
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services import migrations
from services.identity.handler import IdentityHandler
from services.profile.computation import Computation
from services.profile.domain.computed import ComputedTrait
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile
from services.profile.ticker import ProfileTicker
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import reading, writing
from services.runtime.log import Message
from tests.support import Clock, caught_up, running_projectors, wait_until

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


def order(i: int, day: int) -> dict:
    at = (T0 + timedelta(days=day)).isoformat()
    return {"type": "track", "event": "Order Completed", "userId": "grace", "messageId": f"o-{i}",
            "properties": {"revenue": 10}, "timestamp": at, "receivedAt": at}


def tick_while_another_writes(engine, ticker: ProfileTicker) -> int:
    """The ticker's answer while another writer holds the write turn (on SQLite, one a
    process); fails if the ticker waits for that turn."""
    held, release, answers = threading.Event(), threading.Event(), []

    def writer() -> None:
        with writing(engine):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=writer)
    holder.start()
    assert held.wait(10)
    try:
        ticking = threading.Thread(target=lambda: answers.append(ticker.tick()))
        ticking.start()
        ticking.join(10)
        assert answers, "the ticker waited for the write turn with nothing due"
    finally:
        release.set()
        holder.join()
    return answers[0]


def test_an_order_leaves_a_30_day_window_when_it_ages_out_not_at_the_next_event(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    clock = Clock(T0 + timedelta(days=12))
    trait = ComputedTrait(name="orders_30d", function="count", event="Order Completed", window="30d")
    handler = ProfileHandler(Computation(Computation.from_settings(settings).crm, [trait], clock))
    runtime.log.append(topics.EVENTS_RAW, [Message.of("grace", order(1, 0)), Message.of("grace", order(2, 10))])
    with running_projectors(runtime, IdentityHandler(), handler):
        wait_until(lambda: caught_up(runtime, "profile", 2), 60, "both orders applied")

    def grace() -> Profile:
        with reading(runtime.engine) as session:
            return session.scalars(select(Profile)).one()

    # due first when "days since last order" ticks over (day 13), before the window moves
    assert grace().computed["orders_30d"] == 2 and grace().due_at == T0 + timedelta(days=13)
    ticker = ProfileTicker(handler, runtime)
    clock.moment = T0 + timedelta(days=12, hours=23)
    assert tick_while_another_writes(runtime.engine, ticker) == 0  # nothing due yet: no write taken
    clock.moment = T0 + timedelta(days=29, hours=23)
    assert ticker.tick() == 1 and grace().computed["orders_30d"] == 2  # still inside the window
    assert grace().due_at == T0 + timedelta(days=30)  # the day-0 order ages out next
    clock.moment = T0 + timedelta(days=30, seconds=1)
    version = grace().version
    assert ticker.tick() == 1
    assert grace().computed["orders_30d"] == 1 and grace().version > version
    clock.moment = T0 + timedelta(days=40, seconds=1)
    ticker.tick()
    assert grace().computed["orders_30d"] == 0
    runtime.close()
