"""Define segments and read their members over HTTP."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from services.runtime.access import SegmentsRead, SegmentsWrite
from services.runtime.clock import now
from services.runtime.db import writing
from services.runtime.http import ApiError, EngineDep, LogDep, ReadSession
from services.runtime.log import publish_all
from services.segments.domain.conditions import ConditionError, validate
from services.segments.membership import lock_catalog, reevaluate
from services.segments.tables import Segment, SegmentMember, SegmentProfile

router = APIRouter(tags=["segments"])


class SegmentIn(BaseModel):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    condition: dict[str, Any]


def _view(segment: Segment, size: int) -> dict:
    return {"key": segment.key, "name": segment.name, "condition": segment.condition, "size": size}


@router.post("/v1/segments", status_code=201)
def create_segment(body: SegmentIn, engine: EngineDep, log: LogDep, _: SegmentsWrite) -> dict:
    """Define a segment; current profiles are evaluated before this answers."""
    try:
        validate(body.condition)
    except ConditionError as error:
        raise ApiError(422, "invalid_condition", str(error), error.path) from None
    with writing(engine) as session:
        lock_catalog(session, exclusive=True)
        if session.get(Segment, body.key) is not None:
            raise ApiError(409, "exists", f"segment {body.key!r} already exists", "key")
        segment = Segment(key=body.key, name=body.name, condition=body.condition, created_at=now())
        session.add(segment)
        outputs = []
        for profile in session.scalars(select(SegmentProfile)):
            outputs += reevaluate(session, profile.profile_id, profile.traits, [segment])
        publish_all(log, outputs)
        return _view(segment, len(outputs))


@router.get("/v1/segments")
def list_segments(session: ReadSession, _: SegmentsRead) -> list[dict]:
    sizes = dict(session.execute(select(SegmentMember.segment_key, func.count())
                                 .group_by(SegmentMember.segment_key)).all())
    return [_view(s, sizes.get(s.key, 0)) for s in session.scalars(select(Segment).order_by(Segment.key))]


@router.get("/v1/segments/{key}/members")
def members(key: str, session: ReadSession, _: SegmentsRead,
            after: Annotated[str, Query(description="cursor: the last profile id of the previous page")] = "",
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """Members ordered by profile id; pass `next` back as `after` for the next page."""
    if session.get(Segment, key) is None:
        raise ApiError(404, "not_found", f"no segment {key!r}", "key")
    ids = list(session.scalars(select(SegmentMember.profile_id)
                               .where(SegmentMember.segment_key == key, SegmentMember.profile_id > after)
                               .order_by(SegmentMember.profile_id).limit(limit)))
    return {"segment": key, "members": ids, "next": ids[-1] if len(ids) == limit else None}
