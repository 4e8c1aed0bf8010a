"""The lifecycle over HTTP: the funnel, conversion, time in stage, the transitions feed."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from services.runtime.access import SegmentsRead
from services.runtime.clock import format_time
from services.runtime.http import ReadSession
from services.segments.domain.lifecycle import FUNNEL, STAGES, funnel, median
from services.segments.tables import LifecycleStage, LifecycleTransition

router = APIRouter(tags=["lifecycle"])


@router.get("/v1/lifecycle")
def lifecycle(session: ReadSession, _: SegmentsRead) -> dict:
    """Profiles per stage now; conversion between funnel stages over the profiles that exist
    (an id merged away is counted in its survivor); median days spent in a stage."""
    now_in = dict(session.execute(select(LifecycleStage.stage, func.count()).group_by(LifecycleStage.stage)).all())
    reached: dict[str, set[str]] = {stage: set() for stage in STAGES}
    stays: dict[str, list[float]] = {stage: [] for stage in STAGES}
    entered: dict[str, tuple[str, object]] = {}
    for t in session.scalars(select(LifecycleTransition).order_by(LifecycleTransition.seq)):
        reached[t.to_stage].add(t.profile_id)
        if t.profile_id in entered:
            stage, since = entered[t.profile_id]
            stays[stage].append(max((t.at - since).total_seconds() / 86400, 0.0))
        entered[t.profile_id] = (t.to_stage, t.at)
    live = set(session.scalars(select(LifecycleStage.profile_id)))
    reached = {stage: ids & live for stage, ids in reached.items()}
    # a profile that reached a later funnel stage passed through the earlier ones
    for i, stage in enumerate(FUNNEL):
        for later in FUNNEL[i + 1:]:
            reached[stage] |= reached[later]
    return {"stages": [{"stage": s, "profiles": now_in.get(s, 0),
                        "median_days_in_stage": median(stays[s])} for s in STAGES],
            "funnel": funnel({s: len(p) for s, p in reached.items()})}


@router.get("/v1/lifecycle/transitions")
def transitions(session: ReadSession, _: SegmentsRead,
                after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous call")] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> dict:
    """Moves between stages after a cursor, oldest first."""
    rows = list(session.scalars(select(LifecycleTransition).where(LifecycleTransition.seq > after)
                                .order_by(LifecycleTransition.seq).limit(limit)))
    return {"transitions": [{"seq": t.seq, "profile_id": t.profile_id, "from": t.from_stage, "to": t.to_stage,
                             "at": format_time(t.at), "why": t.why} for t in rows],
            "next": rows[-1].seq if rows else after}
