"""A member of `did "Order Completed" within 30d` exits when the order ages out, with no event."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services import migrations
from services.identity.handler import IdentityHandler
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.profile.ticker import ProfileTicker
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import reading, writing
from services.runtime.log import Message
from services.segments.definitions import SegmentIn, save
from services.segments.handler import SegmentsHandler
from services.segments.tables import MembershipChange
from tests.support import Clock, caught_up, running_projectors, wait_until

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def test_a_window_member_exits_when_the_window_passes(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    with writing(runtime.engine) as session:  # defined first: its event trait is declared
        save(session, SegmentIn(key="recent-buyers", name="Bought in 30 days",
                                text='did "Order Completed" within 30d'), existing=None)
    clock = Clock(T0 + timedelta(days=2))
    profile = ProfileHandler(Computation(Computation.from_settings(settings).crm, [], clock))
    at = (T0 + timedelta(days=1)).isoformat()
    runtime.log.append(topics.EVENTS_RAW, [Message.of("lee", {
        "type": "track", "event": "Order Completed", "userId": "lee", "messageId": "o-1",
        "properties": {"revenue": 10}, "timestamp": at, "receivedAt": at})])

    def history():
        with reading(runtime.engine) as session:
            return [c.change for c in session.scalars(select(MembershipChange).order_by(MembershipChange.seq))]
    with running_projectors(runtime, IdentityHandler(), profile, SegmentsHandler()):
        wait_until(lambda: history() == ["entered"], 60, "lee to enter")
        ticker = ProfileTicker(profile, runtime)
        clock.moment = T0 + timedelta(days=30, hours=23)
        ticker.tick()
        wait_until(lambda: caught_up(runtime, "segments", 2), 60, "the re-evaluation")
        assert history() == ["entered"]  # a day before the order leaves the window
        clock.moment = T0 + timedelta(days=31, seconds=1)
        ticker.tick()
        wait_until(lambda: history() == ["entered", "exited"], 60, "lee to exit on time")
    runtime.close()
