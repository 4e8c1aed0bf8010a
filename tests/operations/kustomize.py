"""Renders a kustomization the way `kubectl kustomize` does, for the features deploy/k8s uses
(resources, namespace, labels, images, strategic-merge and JSON 6902 patches), where no
kubectl is installed."""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def render(directory: Path) -> list[dict]:
    """kubectl kustomize when it is installed, else this module's renderer."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True,
                             capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    return render_in_python(directory)


def render_in_python(directory: Path) -> list[dict]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        objects += render_in_python(path) if path.is_dir() else \
            [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        _patch(objects, directory, patch)
    for labels in spec.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
    for image in spec.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _patch(objects: list[dict], directory: Path, patch: dict) -> None:
    if "path" in patch:
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            for obj in objects:
                if (obj["kind"], obj["metadata"]["name"]) == (change["kind"], change["metadata"]["name"]):
                    merge(obj, change)
        return
    target = patch["target"]
    for obj in objects:
        if obj["kind"] == target["kind"] and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]:
            for op in yaml.safe_load(patch["patch"]):
                _json_patch(obj, op)


def merge(base: dict, change: dict) -> None:
    """Strategic merge, as far as it is used: maps merge, lists of named maps merge by name."""
    for key, value in change.items():
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge(old, value)
        elif isinstance(old, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            by_name = {item.get("name"): item for item in old}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    old.append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def _json_patch(obj: dict, op: dict) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op["op"] not in ("add", "replace"):
        raise NotImplementedError(op["op"])
    node[last] = op["value"]


def _set_image(obj: dict, image: dict) -> None:
    spec = obj.get("spec", {})
    spec = spec.get("jobTemplate", {}).get("spec", spec)  # a CronJob's pods are its jobs'
    pod = spec.get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
