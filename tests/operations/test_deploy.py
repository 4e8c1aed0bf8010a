"""Every overlay of deploy/k8s renders, and every object in it is valid: kubernetes-validate
for the core kinds, required fields for the custom resources (Strimzi, KEDA, CloudNativePG)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest

from services.runtime import metrics
from services.runtime.replay import PROJECTIONS
from services.runtime.settings import Settings
from tests.operations.kustomize import render, render_in_python

K8S = Path(__file__).parents[2] / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
KUBERNETES_VERSION = "1.30"
CUSTOM_REQUIRED = {  # kind: paths that must be present ("/" separates, keys may hold dots)
    "Kafka": ["spec/kafka/listeners", "spec/kafka/config", "spec/entityOperator/topicOperator"],
    "KafkaNodePool": ["spec/replicas", "spec/roles", "spec/storage/type", "metadata/labels/strimzi.io~cluster"],
    "KafkaTopic": ["spec/partitions", "spec/replicas", "spec/config/retention.ms",
                   "metadata/labels/strimzi.io~cluster"],
    "ScaledObject": ["spec/scaleTargetRef/name", "spec/maxReplicaCount", "spec/triggers"],
    "Cluster": ["spec/instances", "spec/storage/size", "spec/bootstrap/initdb/database"],
}


def lookup(obj: dict, path: str):
    node = obj
    for part in path.split("/"):
        node = node[part.replace("~", "/")]  # KeyError names what is missing
    return node


@pytest.fixture(params=OVERLAYS)
def objects(request) -> list[dict]:
    return render(K8S / "overlays" / request.param)


def test_every_object_is_valid(objects):
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "Job", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "ScaledObject", "Kafka", "KafkaTopic", "Cluster"} <= kinds
    for obj in objects:
        if obj["kind"] in CUSTOM_REQUIRED:
            for path in CUSTOM_REQUIRED[obj["kind"]]:
                lookup(obj, path)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_deployments_wait_for_migrations_and_have_probes_and_resources(objects):
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "rapport-ingest", "rapport-identity", "rapport-profile", "rapport-segments", "rapport-privacy"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["initContainers"][0]["args"][0] == "wait-migrated"
        [container] = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["terminationGracePeriodSeconds"] > 20  # > RAPPORT_SHUTDOWN_GRACE_S


def test_consumers_scale_on_lag_up_to_their_partitions(objects):
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in objects if t["kind"] == "KafkaTopic"}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in objects if s["kind"] == "ScaledObject"}
    assert set(scaled) == {"rapport-identity", "rapport-profile", "rapport-segments"}
    for scaled_object in scaled.values():
        [trigger] = scaled_object["spec"]["triggers"]
        assert scaled_object["spec"]["maxReplicaCount"] <= partitions[trigger["metadata"]["topic"]]
    settings = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    configured = json.loads(settings["RAPPORT_TOPIC_PARTITIONS"])
    assert {settings["RAPPORT_TOPIC_PREFIX"] + t: n for t, n in configured.items()} == partitions
    kept = {t["spec"]["topicName"] for t in objects if t["kind"] == "KafkaTopic"
            and t["spec"]["config"]["retention.ms"] == -1}
    assert {"rapport.events.raw", "rapport.events.resolved", "rapport.profiles.changed"} <= kept


# a replay process's peak per record of its batch, with headroom: 0.76 GB at 50,000 and
# 1.24 GB at 100,000 records on 1M events (README, Replay: Stops 29 and 30)
REPLAY_BYTES_PER_RECORD = 16_000


def test_the_replay_job_is_run_on_demand_with_the_memory_its_batches_need(objects):
    [cronjob] = [o for o in objects if o["kind"] == "CronJob"]
    assert cronjob["metadata"]["name"] == "rapport-replay" and cronjob["spec"]["suspend"] is True
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["replay", "all"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    settings = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    batch = int(env.get("RAPPORT_REPLAY_BATCH_SIZE") or settings.get("RAPPORT_REPLAY_BATCH_SIZE")
                or Settings.model_fields["replay_batch_size"].default)
    limit = _bytes(container["resources"]["limits"]["memory"])
    assert limit >= len(PROJECTIONS) * batch * REPLAY_BYTES_PER_RECORD, (batch, limit)


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i)?", quantity).groups()
    return int(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="compares the fallback renderer with kubectl")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_python_renderer_agrees_with_kubectl(overlay):
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(render_in_python(K8S / "overlays" / overlay), key=key) == \
        sorted(render(K8S / "overlays" / overlay), key=key)


def test_the_dashboard_charts_only_metrics_rapport_exports():
    dashboard = json.loads((K8S.parent / "grafana" / "rapport-dashboard.json").read_text())
    exported = {m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")}
    charted = {re.sub(r"_(bucket|total)$", "", name) for panel in dashboard["panels"]
               for target in panel["targets"] for name in re.findall(r"rapport_[a-z_]+", target["expr"])}
    assert charted and charted <= exported | {n + "_total" for n in exported}
    assert len(dashboard["panels"]) >= 10
