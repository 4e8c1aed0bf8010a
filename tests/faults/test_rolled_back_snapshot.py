"""A regression the fault suite found: the profile projector publishes a snapshot, is
killed before its commit, and its replayed batch ends where the segments projector was
before (plan set to "pro", then back): the replayed snapshot's `changed` leaves `plan`
out, yet the member must exit "pro", since the segments side held the rolled-back one."""
from __future__ import annotations

import orjson
from sqlalchemy import select

from services import migrations
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.log import Record
from services.runtime.settings import Settings
from services.segments.definitions import SegmentIn, save
from services.segments.handler import SegmentsHandler
from services.segments.tables import SegmentMember


def snapshot(version: int, plan: str, changed: list[str]) -> Record:
    value = {"profile_id": "p1", "version": version, "traits": {"plan": plan}, "computed": {},
             "consent": {}, "changed": changed, "event_count": version,
             "first_seen": "2026-01-01T00:00:00.000Z", "last_seen": "2026-01-01T00:00:00.000Z"}
    return Record(topics.PROFILES_CHANGED, 0, version, "p1", orjson.dumps(value), 0)


def test_a_snapshot_published_then_rolled_back_does_not_leave_a_stale_membership(tmp_path):
    runtime = bootstrap_runtime(Settings(data_dir=tmp_path / "data"))
    try:
        migrations.upgrade(runtime.engine)
        with writing(runtime.engine) as session:
            save(session, SegmentIn(key="pro", name="pro", text='traits.plan = "pro"'), existing=None)
        handler = SegmentsHandler()
        for record in (snapshot(1, "team", ["plan"]),  # committed by the profile projector
                       snapshot(2, "pro", ["plan"]),  # published, then the profile projector died
                       snapshot(3, "team", [])):  # the replay: "team" again, relative to version 1
            with writing(runtime.engine) as session:
                handler.apply(session, [record])
        with writing(runtime.engine) as session:
            assert list(session.scalars(select(SegmentMember.profile_id))) == []
    finally:
        runtime.close()
