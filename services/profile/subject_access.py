"""Subject access (GDPR art. 15): everything held about a person, as one JSON document."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from services.profile import views
from services.profile.tables import ProfileAlias, ProfileEvent
from services.runtime.access import require
from services.runtime.clock import format_time, now
from services.runtime.http import ReadSession
from services.segments.tables import LifecycleTransition, MembershipChange

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])
Privacy = Annotated[None, require("privacy")]


@router.get("/export")
def export(type: Annotated[str, Query(description="any identifier type: email, user_id, phone, ...")],
           value: Annotated[str, Query(min_length=1)], session: ReadSession, _: Privacy) -> dict:
    """The profile found by an identifier: identities, traits with provenance, computed
    traits, consent, memberships and their history, lifecycle stages and every event."""
    profile = views.lookup(session, type, value)
    pid = profile.profile_id
    events = session.scalars(select(ProfileEvent).where(ProfileEvent.profile_id == pid)
                             .order_by(ProfileEvent.timestamp, ProfileEvent.message_id))
    history = session.scalars(select(MembershipChange).where(MembershipChange.profile_id == pid)
                              .order_by(MembershipChange.seq))
    stages = session.scalars(select(LifecycleTransition).where(LifecycleTransition.profile_id == pid)
                             .order_by(LifecycleTransition.seq))
    return {"exported_at": format_time(now()), "found_by": {"type": type, "value": value},
            "profile": views.view_360(session, profile, provenance=True),
            "former_profile_ids": sorted(session.scalars(select(ProfileAlias.absorbed)
                                                         .where(ProfileAlias.survivor == pid))),
            "events": [views.event_view(e) for e in events],
            "segment_history": [{"segment": c.segment_key, "change": c.change, "at": format_time(c.at)}
                                for c in history],
            "lifecycle_history": [{"from": t.from_stage, "to": t.to_stage, "at": format_time(t.at), "why": t.why}
                                  for t in stages]}
