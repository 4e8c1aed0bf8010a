"""Keeps each profile's lifecycle stage and its transitions (the edge around domain/lifecycle)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from services.runtime.clock import parse_time
from services.segments.domain.lifecycle import LifecycleRules, stage_of, transition_time
from services.segments.membership import LIFECYCLE_SEQUENCE_ROW, next_seq
from services.segments.tables import LifecycleStage, LifecycleTransition


def advance(session: Session, snapshot: dict, rules: LifecycleRules) -> str:
    """The profile's stage after this snapshot; a move is recorded as a transition."""
    profile_id = snapshot["profile_id"]
    computed = snapshot.get("computed") or {}
    stage = stage_of(snapshot.get("traits") or {}, computed, rules)
    current = session.get(LifecycleStage, profile_id)
    if current is not None and current.stage == stage.name:
        return stage.name
    at = transition_time(stage, computed, parse_time(snapshot["last_seen"]), rules)
    session.add(LifecycleTransition(seq=next_seq(session, LIFECYCLE_SEQUENCE_ROW), profile_id=profile_id,
                                    from_stage=current.stage if current else None, to_stage=stage.name,
                                    at=at, why=stage.why[:200]))
    if current is None:
        session.add(LifecycleStage(profile_id=profile_id, stage=stage.name, since=at, why=stage.why[:200]))
    else:
        current.stage, current.since, current.why = stage.name, at, stage.why[:200]
    session.flush()
    return stage.name


def forget(session: Session, profile_id: str) -> None:
    """A profile merged away has no stage of its own (its history stays)."""
    current = session.get(LifecycleStage, profile_id)
    if current is not None:
        session.delete(current)
