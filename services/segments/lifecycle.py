"""Moves a profile's lifecycle stage in a batch's state, recording each move as a transition
(the edge around domain/lifecycle; BatchState writes the rows)."""
from __future__ import annotations

from services.runtime.clock import parse_time
from services.segments.batch import BatchState
from services.segments.domain.lifecycle import LifecycleRules, stage_of, transition_time


def advance(state: BatchState, snapshot: dict, rules: LifecycleRules) -> str:
    """The profile's stage after this snapshot; a move is recorded as a transition."""
    profile = state.profiles[snapshot["profile_id"]]
    computed = snapshot.get("computed") or {}
    stage = stage_of(snapshot.get("traits") or {}, computed, rules)
    current = profile.stage
    if current is not None and current["stage"] == stage.name:
        return stage.name
    at = transition_time(stage, computed, parse_time(snapshot["last_seen"]), rules)
    state.transitions.append({"profile_id": snapshot["profile_id"], "from_stage": current and current["stage"],
                              "to_stage": stage.name, "at": at, "why": stage.why[:200]})
    profile.stage = {"stage": stage.name, "since": at, "why": stage.why[:200]}
    return stage.name
