"""GET /v1/profiles/search: profiles by any identifier or its start, for the console's search box."""
from tests.support import RunningPipeline, wait_until


def test_profiles_are_found_by_any_identifier_or_its_start(settings):
    with RunningPipeline(settings) as pipeline:
        pipeline.ingest.post("/v1/identify", json={"userId": "grace-1", "anonymousId": "anon-g",
                                                   "traits": {"email": "Grace.Hopper@Navy.example", "name": "Grace"}})
        pipeline.ingest.post("/v1/identify", json={"userId": "gracie-2", "traits": {"email": "gracie@x.example"}})
        pipeline.ingest.post("/v1/identify", json={"userId": "alan", "traits": {"email": "alan@x.example"}})

        def search(q):
            return pipeline.api.get("/v1/profiles/search", params={"q": q}).json()["profiles"]
        found = wait_until(lambda: len(search("grac")) == 2 and search("grac"), what="both profiles")
        assert {p["email"] for p in found} == {"Grace.Hopper@Navy.example", "gracie@x.example"}
        # an email is matched case-insensitively; each result says what matched
        grace = search("GRACE.HOPPER@")
        assert [m["type"] for m in grace[0]["matched"]] == ["email"] and grace[0]["name"] == "Grace"
        assert search("anon-g")[0]["profile_id"] == grace[0]["profile_id"]
        assert search(grace[0]["profile_id"])[0]["profile_id"] == grace[0]["profile_id"]
        assert search("%") == [] and search("zed") == []  # LIKE wildcards are plain characters
        assert pipeline.api.get("/v1/profiles/search", params={"q": ""}).status_code == 422
