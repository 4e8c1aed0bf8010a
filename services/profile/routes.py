"""Profiles over HTTP: the 360 view, the timeline, lookups, computed-trait definitions."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError
from sqlalchemy import select, update

from services.profile import views
from services.profile.domain.computed import ComputedTrait
from services.profile.tables import ComputedTraitDefinition, Profile
from services.runtime.access import ProfilesRead, require
from services.runtime.clock import now
from services.runtime.db import writing
from services.runtime.http import ApiError, EngineDep, ReadSession

router = APIRouter(tags=["profiles"])
Admin = Annotated[None, require("admin")]


@router.get("/v1/profiles/lookup")
def lookup(type: Annotated[str, Query(description="identifier type: user_id, email, anonymous_id, ...")],
           value: Annotated[str, Query(min_length=1)], session: ReadSession, _: ProfilesRead,
           provenance: bool = False) -> dict:
    """The profile that holds an identifier."""
    return views.view_360(session, views.lookup(session, type, value), provenance)


@router.get("/v1/profiles/search")
def search(q: Annotated[str, Query(min_length=1, max_length=512, description="an identifier or its start")],
           session: ReadSession, _: ProfilesRead, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict:
    """Profiles by any identifier (user id, email, phone, anonymous id, device, handle, ...):
    equal to `q` or starting with it."""
    return {"profiles": views.search(session, q, limit)}


@router.get("/v1/profiles/{profile_id}")
def get_profile(profile_id: str, session: ReadSession, _: ProfilesRead, provenance: bool = False) -> dict:
    """The 360 view; an absorbed id answers with the profile it was merged into."""
    return views.view_360(session, views.existing_profile(session, profile_id), provenance) | {
        "requested_id": profile_id}


@router.get("/v1/profiles/{profile_id}/events")
def timeline(profile_id: str, session: ReadSession, _: ProfilesRead,
             type: str | None = None, event: str | None = None, channel: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             limit: Annotated[int, Query(ge=1, le=500)] = 50, next: str | None = None) -> dict:
    """The cross-source timeline, newest first; pass `next` back for the following page."""
    profile = views.existing_profile(session, profile_id)
    page, cursor = views.timeline_page(session, profile.profile_id, views.TimelineQuery(
        type, event, channel, since, until, limit, next))
    return {"profile_id": profile.profile_id, "events": [views.event_view(e) for e in page], "next": cursor}


@router.get("/v1/computed-traits")
def list_computed_traits(session: ReadSession, _: ProfilesRead) -> list[dict]:
    return [row.definition for row in session.scalars(select(ComputedTraitDefinition)
                                                      .order_by(ComputedTraitDefinition.name))]


@router.post("/v1/computed-traits", status_code=201)
def define_computed_trait(body: dict, engine: EngineDep, _: Admin) -> dict:
    """Declare a computed trait; every profile is recomputed in the background."""
    try:
        trait = ComputedTrait.model_validate(body)
    except ValidationError as error:
        detail = error.errors()[0]
        field = ".".join(str(p) for p in detail["loc"]) or "body"
        raise ApiError(422, "invalid_computed_trait", f"{field}: {detail['msg']}", field) from None
    with writing(engine) as session:
        if session.get(ComputedTraitDefinition, trait.name) is not None:
            raise ApiError(409, "exists", f"computed trait {trait.name!r} already exists", "name")
        session.add(ComputedTraitDefinition(name=trait.name, definition=trait.model_dump(), created_at=now()))
        session.execute(update(Profile).values(due_at=now()))  # the ticker backfills every profile
    return trait.model_dump()


@router.delete("/v1/computed-traits/{name}", status_code=204)
def delete_computed_trait(name: str, engine: EngineDep, _: Admin) -> None:
    with writing(engine) as session:
        row = session.get(ComputedTraitDefinition, name)
        if row is None:
            raise ApiError(404, "not_found", f"no computed trait {name!r}", "name")
        session.delete(row)
        session.execute(update(Profile).values(due_at=now()))
