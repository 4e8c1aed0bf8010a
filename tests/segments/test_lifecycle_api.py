"""A scripted customer journey through the lifecycle, over HTTP, and lapses applied on time."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services import migrations
from services.identity.handler import IdentityHandler
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.profile.ticker import ProfileTicker
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import reading
from services.runtime.log import Message
from services.segments.handler import SegmentsHandler
from services.segments.tables import LifecycleStage
from tests.support import Clock, RunningPipeline, caught_up, running_projectors, wait_until

def zoe(pipeline):
    """Her profile id now (a merge may re-key it when her email arrives)."""
    response = pipeline.api.get("/v1/profiles/lookup", params={"type": "anonymous_id", "value": "zoe-device"})
    return response.status_code == 200 and response.json()


def stage(pipeline):
    profile = zoe(pipeline)
    return profile and (profile["lifecycle_stage"] or {}).get("stage")


def test_a_journey_from_visitor_to_loyal_is_kept_with_its_transitions(settings):
    journey = [
        ({"anonymousId": "zoe-device", "event": "Page Viewed"}, "visitor"),
        ({"anonymousId": "zoe-device", "event": "Signed Up", "context": {"traits": {"email": "zoe@x.io"}}}, "lead"),
        ({"anonymousId": "zoe-device", "event": "Order Completed", "properties": {"revenue": 20}}, "customer"),
        ({"anonymousId": "zoe-device", "event": "Order Completed", "properties": {"revenue": 30}}, "repeat"),
        ({"anonymousId": "zoe-device", "event": "Survey Responded", "properties": {"nps": 10}}, "loyal"),
    ]
    with RunningPipeline(settings) as pipeline:
        for body, expected in journey:
            assert pipeline.ingest.post("/v1/track", json=body).status_code == 200
            wait_until(lambda: stage(pipeline) == expected, what=f"stage {expected}")
        current = zoe(pipeline)["profile_id"]
        feed = pipeline.api.get("/v1/lifecycle/transitions").json()
        moves = [(t["from"], t["to"]) for t in feed["transitions"] if t["profile_id"] == current]
        assert [to for _, to in moves][-4:] == ["lead", "customer", "repeat", "loyal"]
        assert moves[-3:] == [("lead", "customer"), ("customer", "repeat"), ("repeat", "loyal")]
        assert pipeline.api.get("/v1/lifecycle/transitions", params={"after": feed["next"]}).json()["transitions"] == []
        overview = pipeline.api.get("/v1/lifecycle").json()
        assert {s["stage"]: s["profiles"] for s in overview["stages"]}["loyal"] == 1
        assert all(row["rate"] == 1.0 for row in overview["funnel"])
        segment = pipeline.api.post("/v1/segments", json={"key": "loyal", "name": "Loyal", "text": 'stage = "loyal"'})
        assert segment.status_code == 201
        wait_until(lambda: pipeline.api.get("/v1/segments/loyal/members").json()["members"] == [current],
                   what="a segment on the stage")


def test_a_customer_becomes_at_risk_then_churned_on_time_without_new_events(settings):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    clock = Clock(t0 + timedelta(days=1))
    profile = ProfileHandler(Computation(Computation.from_settings(settings).crm, [], clock))
    at = t0.isoformat()
    runtime.log.append(topics.EVENTS_RAW, [Message.of("kim", {
        "type": "track", "event": "Order Completed", "userId": "kim", "messageId": "o-1",
        "properties": {"revenue": 10}, "timestamp": at, "receivedAt": at})])

    def kim_stage():
        with reading(runtime.engine) as session:
            row = session.scalars(select(LifecycleStage)).first()
            return row and (row.stage, row.since)
    with running_projectors(runtime, IdentityHandler(), profile, SegmentsHandler()):
        wait_until(lambda: caught_up(runtime, "profile", 1), 60, "the order applied")
        assert wait_until(kim_stage, 60, "a stage")[0] == "customer"
        ticker = ProfileTicker(profile, runtime)
        clock.moment = t0 + timedelta(days=91)
        ticker.tick()
        assert wait_until(lambda: (s := kim_stage()) and s[0] == "at_risk" and s, 60, "at risk")[1] == \
            t0 + timedelta(days=90)
        clock.moment = t0 + timedelta(days=181)
        ticker.tick()
        assert wait_until(lambda: (s := kim_stage()) and s[0] == "churned" and s, 60, "churned")[1] == \
            t0 + timedelta(days=180)
    runtime.close()
