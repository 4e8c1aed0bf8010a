"""Segments over HTTP, as marketing tools use them: definitions, members, the changes feed,
exports, preview and sizes over time."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from services.runtime.access import SegmentsRead, SegmentsWrite
from services.runtime.db import reading, writing
from services.runtime.http import ApiError, EngineDep, LogDep, ReadSession
from services.runtime.log import publish_all
from services.segments import definitions
from services.segments.definitions import SegmentIn
from services.segments.domain.conditions import ProfileFacts, evaluate
from services.segments.domain.index import effective_condition
from services.segments.membership import load_index, lock_catalog, reevaluate
from services.segments.tables import MembershipChange, Segment, SegmentMember, SegmentProfile

router = APIRouter(tags=["segments"])
Limit = Annotated[int, Query(ge=1, le=1000)]


def existing(session, key: str) -> Segment:
    segment = session.get(Segment, key)
    if segment is None:
        raise ApiError(404, "not_found", f"no segment {key!r}", "key")
    return segment


def size_of(session, key: str) -> int:
    return session.scalar(select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_key == key))


@router.post("/v1/segments", status_code=201)
def create_segment(body: SegmentIn, engine: EngineDep, _: SegmentsWrite) -> dict:
    """Define a segment (JSON `condition` or `text`); existing profiles are evaluated in the
    background: follow `backfill` on GET /v1/segments/{key}."""
    with writing(engine) as session:
        if session.get(Segment, body.key) is not None:
            raise ApiError(409, "exists", f"segment {body.key!r} already exists", "key")
        return definitions.view(definitions.save(session, body, existing=None), 0)


@router.put("/v1/segments/{key}")
def update_segment(key: str, body: SegmentIn, engine: EngineDep, _: SegmentsWrite) -> dict:
    if body.key != key:
        raise ApiError(422, "key_mismatch", f"key: the body names {body.key!r}, the path {key!r}", "key")
    with writing(engine) as session:
        segment = definitions.save(session, body, existing=existing(session, key))
        return definitions.view(segment, size_of(session, key))


@router.delete("/v1/segments/{key}", status_code=204)
def delete_segment(key: str, engine: EngineDep, log: LogDep, _: SegmentsWrite) -> None:
    """Every member exits (recorded and published), then the definition goes."""
    with writing(engine) as session:
        lock_catalog(session, exclusive=True)
        segment = existing(session, key)
        if users := definitions.dependents(session, key):
            raise ApiError(409, "in_use", f"segments {', '.join(users)} read this one", "key")
        index, _ = load_index(session)
        outputs = [o for member in list(session.scalars(select(SegmentMember.profile_id)
                                                        .where(SegmentMember.segment_key == key)))
                   for o in reevaluate(session, member, None, index, [key])]
        session.delete(segment)
        publish_all(log, outputs)


@router.get("/v1/segments")
def list_segments(session: ReadSession, _: SegmentsRead) -> list[dict]:
    sizes = dict(session.execute(select(SegmentMember.segment_key, func.count())
                                 .group_by(SegmentMember.segment_key)).all())
    return [definitions.view(s, sizes.get(s.key, 0)) for s in session.scalars(select(Segment).order_by(Segment.key))]


@router.get("/v1/segments/{key}")
def get_segment(key: str, session: ReadSession, _: SegmentsRead) -> dict:
    return definitions.view(existing(session, key), size_of(session, key))


@router.get("/v1/segments/{key}/members")
def members(key: str, session: ReadSession, _: SegmentsRead,
            after: Annotated[str, Query(description="cursor: the last profile id of the previous page")] = "",
            limit: Limit = 100) -> dict:
    """Members ordered by profile id; pass `next` back as `after`. A member that enters or
    leaves meanwhile never shifts the pages already read."""
    existing(session, key)
    ids = list(session.scalars(select(SegmentMember.profile_id)
                               .where(SegmentMember.segment_key == key, SegmentMember.profile_id > after)
                               .order_by(SegmentMember.profile_id).limit(limit)))
    return {"segment": key, "members": ids, "next": ids[-1] if len(ids) == limit else None}


@router.get("/v1/segments/{key}/changes")
def changes(key: str, session: ReadSession, _: SegmentsRead,
            after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous call; 0 to start")] = 0,
            limit: Limit = 500) -> dict:
    """Entries and exits after a cursor, oldest first: the incremental sync."""
    existing(session, key)
    rows = list(session.scalars(select(MembershipChange)
                                .where(MembershipChange.segment_key == key, MembershipChange.seq > after)
                                .order_by(MembershipChange.seq).limit(limit)))
    return {"segment": key, "changes": [{"seq": r.seq, "profile_id": r.profile_id, "change": r.change,
                                         "at": r.at.isoformat()} for r in rows],
            "next": rows[-1].seq if rows else after}


@router.get("/v1/segments/{key}/sizes")
def sizes(key: str, session: ReadSession, _: SegmentsRead) -> dict:
    """Member count at the end of each day with a change, from the history."""
    existing(session, key)
    series, size = {}, 0  # days are cut in Python: the same on SQLite and PostgreSQL
    for change in session.scalars(select(MembershipChange).where(MembershipChange.segment_key == key)
                                  .order_by(MembershipChange.seq)):
        size += 1 if change.change == "entered" else -1
        series[change.at.date().isoformat()] = size
    return {"segment": key, "sizes": [{"date": d, "size": s} for d, s in series.items()]}


@router.get("/v1/segments/{key}/export")
def export(key: str, engine: EngineDep, _: SegmentsRead, format: Literal["csv", "jsonl"] = "jsonl",
           traits: Annotated[str, Query(description="comma-separated trait names to include")] = "") -> StreamingResponse:
    """Every member with the chosen traits, streamed (members without a required consent are
    never members, so never exported)."""
    with reading(engine) as session:
        existing(session, key)
    names = [t.strip() for t in traits.split(",") if t.strip()]
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(_rows(engine, key, names, format), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{key}.{format}"'})


def _rows(engine, key: str, names: list[str], format: str) -> Iterator[str]:
    if format == "csv":
        yield _csv_line(["profile_id", *names])
    after = ""
    while True:
        with reading(engine) as session:
            page = session.execute(
                select(SegmentMember.profile_id, SegmentProfile.traits)
                .join(SegmentProfile, SegmentProfile.profile_id == SegmentMember.profile_id, isouter=True)
                .where(SegmentMember.segment_key == key, SegmentMember.profile_id > after)
                .order_by(SegmentMember.profile_id).limit(1000)).all()
        for profile_id, profile_traits in page:
            chosen = {n: (profile_traits or {}).get(n) for n in names}
            yield _csv_line([profile_id, *chosen.values()]) if format == "csv" else \
                json.dumps({"profile_id": profile_id, "traits": chosen}) + "\n"
        if len(page) < 1000:
            return
        after = page[-1][0]


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v if not isinstance(v, (dict, list)) else json.dumps(v)
                              for v in values])
    return out.getvalue()


@router.post("/v1/segments/preview")
def preview(body: dict, session: ReadSession, _: SegmentsRead,
            sample: Annotated[int, Query(ge=0, le=100)] = 10) -> dict:
    """How many profiles a definition would hold now, and a sample, without saving it."""
    tree, text = definitions.canonical(body)
    condition = effective_condition(tree, body.get("requires_consent"))
    index, _ = load_index(session)
    memberships: dict[str, set[str]] = {}
    for profile_id, key in session.execute(select(SegmentMember.profile_id, SegmentMember.segment_key)):
        memberships.setdefault(profile_id, set()).add(key)
    count, chosen = 0, []
    for profile in session.scalars(select(SegmentProfile).order_by(SegmentProfile.profile_id)):
        facts = ProfileFacts(profile.traits or {}, profile.computed or {}, profile.stage, profile.consent or {},
                             frozenset(memberships.get(profile.profile_id, ())))
        if evaluate(condition, facts):
            count += 1
            if len(chosen) < sample:
                chosen.append({"profile_id": profile.profile_id, "traits": profile.traits})
    return {"condition": tree, "text": text, "count": count, "sample": chosen}
