"""GET /v1/sources/{id}/rejected: a source's recent rejected events, with reasons, on each backend."""
import httpx

from tests.support import RunningPipeline, wait_until


def test_a_sources_recent_rejections_are_listed_newest_first_with_their_reasons(settings):
    with RunningPipeline(settings) as pipeline:
        other = pipeline.api.post("/v1/sources", json={"name": "shop", "kind": "shop"}).json()
        answer = pipeline.ingest.post("/v1/batch", json={"batch": [
            {"type": "track", "userId": "ada", "event": "Signed Up"},
            {"type": "track", "userId": "ada", "messageId": "no-name"},  # no event name
            {"type": "page", "messageId": "nobody"}]})  # neither userId nor anonymousId
        assert [r["index"] for r in answer.json()["rejected"]] == [1, 2]
        httpx.post(pipeline.ingest.base_url.join("/v1/track"), json={"messageId": "shop-bad", "event": "x"},
                   auth=(other["write_key"], ""))
        sources = pipeline.api.get("/v1/sources").json()["sources"]
        mine = next(s["id"] for s in sources if s["write_key"] == pipeline.write_key)

        def listed():
            return pipeline.api.get(f"/v1/sources/{mine}/rejected").json()["rejected"]
        rejected = wait_until(lambda: len(listed()) == 2 and listed(), what="two rejections")
        assert {r["payload"]["messageId"] for r in rejected} == {"no-name", "nobody"}  # not the shop's
        assert all(r["reason"]["message"] and r["reason"]["field"] for r in rejected)
        assert rejected[0]["received_at"] >= rejected[1]["received_at"]
        assert pipeline.api.get(f"/v1/sources/{other['id']}/rejected",
                                params={"limit": 1}).json()["rejected"][0]["payload"]["messageId"] == "shop-bad"
        assert pipeline.api.get("/v1/sources/src_none/rejected").status_code == 404
