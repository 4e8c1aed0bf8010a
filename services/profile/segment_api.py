"""Segment Profile API compatible routes, so tools written for it read Rapport unchanged.

/v1/spaces/{space}/collections/users/profiles/{type}:{value}/{traits,events,external_ids,
metadata,links}; the access token is the HTTP Basic username. Rapport has one space, so
any space id is accepted.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from services.profile import views
from services.profile.tables import Profile, ProfileEvent
from services.runtime.access import ProfilesRead
from services.runtime.clock import format_time
from services.runtime.http import ApiError, ReadSession

router = APIRouter(prefix="/v1/spaces/{space}/collections/users/profiles/{external_id}",
                   tags=["segment profile api"])
Limit = Annotated[int, Query(ge=1, le=200)]


def profile_of(session, external_id: str) -> Profile:
    kind, sep, value = external_id.partition(":")
    if not sep or not value:
        raise ApiError(400, "invalid_external_id", "the profile is named type:value, e.g. user_id:42",
                       "external_id")
    if kind == "segment_id":
        return views.existing_profile(session, value)
    return views.lookup(session, kind, value)


def cursor(request: Request, next_value: str | None, limit: int) -> dict:
    url = str(request.url.include_query_params(next=next_value)) if next_value else ""
    return {"url": url, "has_more": next_value is not None, "next": next_value or "", "limit": limit}


def all_traits(session, profile: Profile, kind: str | None, verbose: bool) -> dict:
    custom = views.traits(session, profile.profile_id, provenance=verbose)
    computed = {k: v for k, v in views.computed(session, profile).items() if not isinstance(v, (dict, list))}
    audiences = {m["segment"]: True for m in views.memberships(session, profile.profile_id)}
    if verbose:
        computed = {k: {"value": v} for k, v in computed.items()}
        audiences = {k: {"value": v} for k, v in audiences.items()}
    chosen = {"audience": audiences, "computed_trait": computed}.get(kind)
    return dict(sorted((chosen if chosen is not None else {**custom, **computed, **audiences}).items()))


@router.get("/traits")
def traits(space: str, external_id: str, request: Request, session: ReadSession, _: ProfilesRead,
           include: str | None = None, limit: Limit = 100, next: str = "", verbose: bool = False,
           class_: Annotated[str | None, Query(alias="class", pattern="^(audience|computed_trait)$")] = None) -> dict:
    """Traits, computed traits and audiences (segments) by name; `next` is the last name seen."""
    values = all_traits(session, profile_of(session, external_id), class_, verbose)
    if include:
        wanted = {name.strip() for name in include.split(",")}
        values = {k: v for k, v in values.items() if k in wanted}
    names = [n for n in values if n > next][:limit + 1]
    page = names[:limit]
    return {"traits": {n: values[n] for n in page},
            "cursor": cursor(request, page[-1] if len(names) > limit else None, limit)}


@router.get("/events")
def events(space: str, external_id: str, request: Request, session: ReadSession, _: ProfilesRead,
           limit: Limit = 10, next: str | None = None) -> dict:
    profile = profile_of(session, external_id)
    page, following = views.timeline_page(session, profile.profile_id,
                                          views.TimelineQuery(limit=limit, cursor=next or None))
    ids = external_ids_of(session, profile)
    return {"data": [{"external_ids": ids, "context": {"channel": e.channel}, "type": e.type,
                      "source_id": e.source, "message_id": e.message_id,
                      "timestamp": format_time(e.timestamp), "properties": e.properties,
                      "event": e.name, "related": None} for e in page],
            "cursor": cursor(request, following, limit)}


def external_ids_of(session, profile: Profile) -> list[dict]:
    first = format_time(profile.first_seen)
    return [{"id": i["value"], "type": i["type"], "source_id": None, "collection": "users",
             "created_at": first, "encoding": "none"} for i in views.identities(session, profile.profile_id)]


@router.get("/external_ids")
def external_ids(space: str, external_id: str, request: Request, session: ReadSession, _: ProfilesRead,
                 limit: Limit = 25, next: str = "") -> dict:
    ids = external_ids_of(session, profile_of(session, external_id))
    key = lambda i: f"{i['type']}:{i['id']}"  # noqa: E731 - the cursor is the last type:value seen
    later = [i for i in ids if key(i) > next][:limit + 1]
    return {"data": later[:limit], "cursor": cursor(request, key(later[limit - 1]) if len(later) > limit else None,
                                                     limit)}


@router.get("/metadata")
def metadata(space: str, external_id: str, session: ReadSession, _: ProfilesRead) -> dict:
    profile = profile_of(session, external_id)
    e = ProfileEvent
    ordered = select(e.message_id, e.source).where(e.profile_id == profile.profile_id)
    first = session.execute(ordered.order_by(e.timestamp, e.message_id).limit(1)).first()
    last = session.execute(ordered.order_by(e.timestamp.desc(), e.message_id.desc()).limit(1)).first()
    return {"segment_id": profile.profile_id, "created_at": format_time(profile.first_seen),
            "updated_at": format_time(profile.last_seen), "expires_at": None,
            "first_message_id": first.message_id if first else None,
            "first_source_id": first.source if first else None,
            "last_message_id": last.message_id if last else None,
            "last_source_id": last.source if last else None,
            "event_count": session.scalar(select(func.count()).select_from(e)
                                          .where(e.profile_id == profile.profile_id))}


@router.get("/links")
def links(space: str, external_id: str, request: Request, session: ReadSession, _: ProfilesRead,
          limit: Limit = 20) -> dict:
    """Links to account profiles: Rapport keeps none yet (group calls are not profiled)."""
    profile_of(session, external_id)
    return {"data": [], "cursor": cursor(request, None, limit)}
