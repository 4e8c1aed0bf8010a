"""Files ingest reads at start: the event catalogue (schemas/events/) and webhook mappings."""
from __future__ import annotations

import json
from pathlib import Path

from services.ingest.domain.plan import TrackingPlan

REPO = Path(__file__).resolve().parents[2]
EVENT_SCHEMAS = REPO / "schemas" / "events"
BUILT_IN_MAPPINGS = Path(__file__).resolve().parent / "webhooks"


def _documents(folder: Path | None) -> list[dict]:
    if folder is None or not folder.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def tracking_plan(folder: Path = EVENT_SCHEMAS) -> TrackingPlan:
    return TrackingPlan(_documents(folder))


def webhook_mappings(extra: Path | None = None) -> dict[str, dict]:
    """Mappings by name: the built-in ones, then the operator's (which may replace them)."""
    return {mapping["name"]: mapping for mapping in _documents(BUILT_IN_MAPPINGS) + _documents(extra)}
