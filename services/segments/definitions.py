"""Saving segment definitions: checked, canonical, event conditions declared, backfill queued."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.profile.tables import ComputedTraitDefinition, Profile
from services.runtime.clock import now
from services.runtime.http import ApiError
from services.segments.backfill import queue_backfill
from services.segments.domain.conditions import (ConditionError, check_references, event_trait, leaves,
                                                 normalise, referenced_segments)
from services.segments.domain.text import parse, to_text
from services.segments.membership import lock_catalog
from services.segments.tables import Segment


class SegmentIn(BaseModel):
    """A definition, as JSON (`condition`) or as text (`text`)."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    condition: dict[str, Any] | None = None
    text: str | None = Field(None, min_length=1, max_length=4000)
    requires_consent: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,63}$",
                                         description="a consent purpose members must have given")

    @model_validator(mode="after")
    def _one_form(self):
        if (self.condition is None) == (self.text is None):
            raise ValueError("give exactly one of condition (JSON) or text")
        return self


def canonical(body: SegmentIn | dict) -> tuple[dict, str | None]:
    """The canonical tree and its text form, or a 422 pointing at the offending part."""
    condition, text = (body.condition, body.text) if isinstance(body, SegmentIn) else (
        body.get("condition"), body.get("text"))
    try:
        tree = parse(text) if text is not None else normalise(condition)
    except ConditionError as error:
        raise ApiError(422, "invalid_condition", str(error), error.path) from None
    try:
        return tree, to_text(tree)
    except ConditionError:
        return tree, None  # a name the text form can't spell: JSON only


def save(session: Session, body: SegmentIn, *, existing: Segment | None) -> Segment:
    """Create or replace a definition; its backfill over existing profiles is queued."""
    lock_catalog(session, exclusive=True)
    tree, text = canonical(body)
    others = {s.key: s.condition for s in session.scalars(select(Segment).where(Segment.key != body.key))}
    try:
        check_references(body.key, tree, others)
    except ConditionError as error:
        raise ApiError(422, "invalid_condition", str(error), error.path) from None
    declare_event_traits(session, tree)
    segment = existing or Segment(key=body.key, created_at=now())
    segment.name, segment.condition, segment.text = body.name, tree, text
    segment.requires_consent, segment.updated_at = body.requires_consent, now()
    if existing is None:
        session.add(segment)
    queue_backfill(session, segment)
    session.flush()
    return segment


def declare_event_traits(session: Session, tree: dict) -> None:
    """Event conditions are counted by computed traits of the profile service (one database),
    which also expires their windows on time; new ones are computed for every profile."""
    added = False
    for leaf in leaves(tree):
        if "event" in leaf:
            trait = event_trait(leaf)
            if session.get(ComputedTraitDefinition, trait["name"]) is None:
                session.add(ComputedTraitDefinition(name=trait["name"], definition=trait, created_at=now()))
                added = True
    if added:
        session.flush()
        session.execute(update(Profile).values(due_at=now()))


def dependents(session: Session, key: str) -> list[str]:
    return sorted(s.key for s in session.scalars(select(Segment)) if key in referenced_segments(s.condition))


def view(segment: Segment, size: int) -> dict:
    return {"key": segment.key, "name": segment.name, "condition": segment.condition, "text": segment.text,
            "requires_consent": segment.requires_consent, "size": size,
            "backfill": {"state": segment.backfill_state, "done": segment.backfill_done,
                         "total": segment.backfill_total}}
