"""Retention of raw events (embedded log) and of the timeline, with a controllable clock."""
import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services import migrations
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile, ProfileEvent
from services.profile.ticker import ProfileTicker
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import reading, writing
from services.runtime.log import Message, Record, TopicPartition
from services.runtime.log.embedded import EmbeddedLog
from services.runtime.retention import RawEventRetention
from services.runtime.settings import Settings
from tests.profile.test_handler import resolved
from tests.support import Clock


def test_raw_events_past_retention_leave_the_embedded_log_but_offsets_go_on(tmp_path):
    log = EmbeddedLog(Settings(data_dir=tmp_path, default_partitions=1))
    log.ensure_topics([topics.EVENTS_RAW])
    log.append(topics.EVENTS_RAW, [Message.of("k", i) for i in range(5)])
    clock = Clock(datetime.now(timezone.utc) + timedelta(days=31))
    RawEventRetention(log, days=30, clock=clock).step()
    left = log.read(TopicPartition(topics.EVENTS_RAW, 0), 0, 100)
    assert [r.offset for r in left] == [4]  # the newest stays: it carries the end offset
    log.append(topics.EVENTS_RAW, [Message.of("k", 5)])
    assert [r.offset for r in log.read(TopicPartition(topics.EVENTS_RAW, 0), 0, 100)] == [4, 5]
    clock.moment = datetime.now(timezone.utc) + timedelta(days=29)
    RawEventRetention(log, days=30, clock=clock).step()
    assert len(log.read(TopicPartition(topics.EVENTS_RAW, 0), 0, 100)) == 2  # nothing old enough yet
    log.close()


def test_timeline_events_past_retention_go_and_the_profile_is_recomputed(settings):
    settings.timeline_retention_days = 30
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    clock = Clock(datetime(2026, 2, 10, tzinfo=timezone.utc))
    handler = ProfileHandler(Computation(Computation.from_settings(settings).crm, [], clock))
    with writing(runtime.engine) as session:  # orders on Feb 1 and Feb 5
        handler.apply(session, [Record("events.resolved", 0, i, None, json.dumps(m).encode(), 0)
                                for i, m in enumerate([resolved("p", "m1", 1, 10), resolved("p", "m2", 5, 20)])])
    ticker = ProfileTicker(handler, runtime)
    clock.moment = datetime(2026, 3, 4, tzinfo=timezone.utc)  # Feb 1 is past 30 days, Feb 5 is not
    ticker.step()
    ticker.step()  # the recompute the sweep scheduled
    with reading(runtime.engine) as session:
        assert list(session.scalars(select(ProfileEvent.message_id))) == ["m2"]
        assert session.scalars(select(Profile)).one().computed["revenue"] == 20.0
    runtime.close()
