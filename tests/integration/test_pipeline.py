"""Events in over HTTP, profiles and segment membership out over HTTP, on each backend."""
from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from tests.support import RunningPipeline, wait_until

ANON = new_profile_id(Identifier("anonymous_id", "anon-1"))
USER = new_profile_id(Identifier("user_id", "user-1"))
# a profile is named after its strongest identifier: the user_id outranks the anonymous_id
SURVIVOR, ABSORBED = USER, ANON


def profile(pipeline, profile_id):
    response = pipeline.api.get(f"/v1/profiles/{profile_id}")
    return response.json() if response.status_code == 200 else None


def members(pipeline, key):
    return pipeline.api.get(f"/v1/segments/{key}/members").json()["members"]


def test_events_become_a_merged_profile_in_a_segment(settings):
    with RunningPipeline(settings) as pipeline:
        created = pipeline.api.post("/v1/segments", json={
            "key": "pro", "name": "Pro plan", "condition": {"trait": "plan", "equals": "pro"}})
        assert created.status_code == 201, created.text

        sent = [
            ("/v1/track", {"anonymousId": "anon-1", "event": "Page Viewed",
                           "timestamp": "2026-01-01T10:00:00Z"}),
            ("/v1/identify", {"userId": "user-1", "traits": {"plan": "pro", "email": "Ada@Example.com"},
                              "timestamp": "2026-01-02T10:00:00Z"}),
            # a late event: older than the identify above, so its plan must not win
            ("/v1/identify", {"userId": "user-1", "traits": {"plan": "free", "name": "Ada"},
                              "timestamp": "2026-01-01T09:00:00Z"}),
            # links the anonymous visitor to the user: the two profiles merge
            ("/v1/track", {"userId": "user-1", "anonymousId": "anon-1", "event": "Signed Up",
                           "timestamp": "2026-01-03T10:00:00Z"}),
            ("/v1/identify", {"userId": "user-2", "traits": {"plan": "free"}}),
        ]
        for n, (path, body) in enumerate(sent):
            response = pipeline.ingest.post(path, json=body)
            assert response.status_code == 200 and response.json() == {"success": True}, response.text
            if n == 0:  # the visitor's profile is read (so its id is known) before the user's events
                wait_until(lambda: profile(pipeline, ABSORBED), what="the visitor's own profile")

        merged = wait_until(lambda: (p := profile(pipeline, SURVIVOR)) and p["event_count"] == 4 and p,
                            what="the merged profile to hold all four events")
        assert merged["traits"] == {"plan": "pro", "email": "Ada@Example.com", "name": "Ada"}
        assert merged["first_seen"] == "2026-01-01T09:00:00.000000Z"
        # an id once read reads as its survivor after the merge (events on separate partitions
        # reach identity in any order: a visit resolved only after the login joins the user's
        # profile directly, and the visitor's own id is never issued)
        assert profile(pipeline, ABSORBED)["profile_id"] == SURVIVOR

        wait_until(lambda: members(pipeline, "pro") == [SURVIVOR], what="the survivor to be the only member")


def test_segment_defined_after_the_events_is_filled_from_existing_profiles(settings):
    with RunningPipeline(settings) as pipeline:
        for user, plan in [("u-a", "pro"), ("u-b", "free"), ("u-c", "pro")]:
            assert pipeline.ingest.post("/v1/identify", json={"userId": user, "traits": {"plan": plan}}
                                        ).status_code == 200
        expected = sorted(new_profile_id(Identifier("user_id", u)) for u in ("u-a", "u-c"))
        wait_until(lambda: all(profile(pipeline, new_profile_id(Identifier("user_id", u)))
                               for u in ("u-a", "u-b", "u-c")), what="three profiles")

        def segment_snapshot_count():
            from sqlalchemy import func, select

            from services.runtime.db import reading
            from services.segments.tables import SegmentProfile
            with reading(pipeline.runtime.engine) as session:
                return session.scalar(select(func.count()).select_from(SegmentProfile)) == 3

        wait_until(segment_snapshot_count, what="the segments projector to see three profiles")
        created = pipeline.api.post("/v1/segments", json={
            "key": "pro", "name": "Pro", "condition": {"trait": "plan", "equals": "pro"}})
        assert created.status_code == 201 and created.json()["backfill"]["state"] == "pending"
        done = wait_until(lambda: (s := pipeline.api.get("/v1/segments/pro").json())["backfill"]["state"] == "done"
                          and s, what="the background backfill")
        assert done["size"] == 2 and done["backfill"]["done"] == done["backfill"]["total"] == 3
        assert members(pipeline, "pro") == expected


def test_bad_input_gets_a_4xx_naming_the_field(settings):
    with RunningPipeline(settings) as pipeline:
        missing = pipeline.ingest.post("/v1/track", json={"userId": "u1"})
        assert missing.status_code == 400
        assert missing.json()["error"]["field"] == "event"
        nobody = pipeline.ingest.post("/v1/track", json={"event": "X"})
        assert nobody.status_code == 400 and "userId or anonymousId" in nobody.json()["error"]["message"]
        garbage = pipeline.ingest.post("/v1/identify", content=b"{not json")
        assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"
        unknown_key = pipeline.ingest.post("/v1/track", json={"userId": "u", "event": "X"},
                                           auth=("wrong", ""))
        assert unknown_key.status_code == 401
        no_token = pipeline.api.get("/v1/segments", headers={"Authorization": ""})
        assert no_token.status_code == 401
