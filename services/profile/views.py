"""Read side of profiles: the 360 view, the timeline page, identities, lookups."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from services.profile.domain.crm import rfm_score
from services.profile.handler import stored_traits, survivor_of
from services.profile.applying import traits_by_profile
from services.profile.tables import Profile, ProfileConsent, ProfileEvent, ProfileIdentity, RfmCuts
from services.runtime.clock import format_time, now, parse_time
from services.runtime.http import ApiError
from services.segments.tables import LifecycleStage, SegmentMember


def existing_profile(session: Session, profile_id: str) -> Profile:
    """The profile (an absorbed id reads as its survivor), or a 404."""
    profile = session.get(Profile, survivor_of(session, profile_id))
    if profile is None:
        raise ApiError(404, "not_found", f"no profile {profile_id!r}", "profile_id")
    return profile


def lookup(session: Session, kind: str, value: str) -> Profile:
    """The profile holding an identifier (emails match case-insensitively)."""
    value = value.strip().lower() if kind == "email" else value.strip()
    found = session.scalars(select(ProfileIdentity.profile_id)
                            .where(ProfileIdentity.type == kind, ProfileIdentity.value == value)).first()
    if found is None:
        raise ApiError(404, "not_found", f"no profile with {kind} {value!r}", "value")
    return existing_profile(session, found)


def search(session: Session, query: str, limit: int) -> list[dict]:
    """Profiles holding an identifier equal to or starting with `query` (any type, emails and
    handles case-insensitively), or whose id it is; each with what matched and a short summary."""
    query = query.strip()
    matches = session.execute(select(ProfileIdentity.profile_id, ProfileIdentity.type, ProfileIdentity.value)
                              .where(or_(ProfileIdentity.value.startswith(query, autoescape=True),
                                         ProfileIdentity.value.startswith(query.lower(), autoescape=True),
                                         ProfileIdentity.profile_id == query))
                              .order_by(ProfileIdentity.value).limit(limit * 5)).all()
    found: dict[str, list[dict]] = {}
    for profile_id, type_, value in matches:
        found.setdefault(survivor_of(session, profile_id), []).append({"type": type_, "value": value})
    results = []
    for profile_id, matched in list(found.items())[:limit]:
        profile = session.get(Profile, profile_id)
        if profile is None:
            continue
        shown = traits(session, profile_id, provenance=False)
        results.append({"profile_id": profile_id, "matched": matched[:5], "name": shown.get("name"),
                        "email": shown.get("email"), "last_seen": format_time(profile.last_seen),
                        "lifecycle_stage": (lifecycle_stage(session, profile_id) or {}).get("stage")})
    return results


def identities(session: Session, profile_id: str) -> list[dict]:
    rows = session.scalars(select(ProfileIdentity).where(ProfileIdentity.profile_id == profile_id)
                           .order_by(ProfileIdentity.type, ProfileIdentity.value))
    return [{"type": r.type, "value": r.value} for r in rows]


def traits(session: Session, profile_id: str, provenance: bool) -> dict:
    values = {n: t for n, t in sorted(stored_traits(session, profile_id).items()) if t.value is not None}
    if not provenance:
        return {n: t.value for n, t in values.items()}
    return {n: {"value": t.value, "updated_at": format_time(t.at), "source_id": t.source,
                "message_id": t.message_id} for n, t in values.items()}


def memberships(session: Session, profile_id: str) -> list[dict]:
    rows = session.scalars(select(SegmentMember).where(SegmentMember.profile_id == profile_id)
                           .order_by(SegmentMember.segment_key))
    return [{"segment": r.segment_key, "entered_at": format_time(r.entered_at)} for r in rows]


def computed(session: Session, profile: Profile) -> dict:
    """Stored computed values, with the read-time ones: days since last order, RFM."""
    values = dict(profile.computed or {})
    if values.get("last_order_at"):
        values["days_since_last_order"] = (now() - parse_time(values["last_order_at"])).days
    cuts = {r.dimension: r.cuts for r in session.scalars(select(RfmCuts))}
    if values.get("orders") and all(cuts.get(d) for d in ("recency", "frequency", "monetary")):
        values["rfm"] = rfm_score(values["days_since_last_order"], values["orders"], values["revenue"], cuts)
    return values


def view_360(session: Session, profile: Profile, provenance: bool) -> dict:
    pid = profile.profile_id
    return {"profile_id": pid, "first_seen": format_time(profile.first_seen),
            "last_seen": format_time(profile.last_seen), "event_count": profile.event_count,
            "identities": identities(session, pid), "traits": traits(session, pid, provenance),
            "computed_traits": computed(session, profile), "segments": memberships(session, pid),
            "lifecycle_stage": lifecycle_stage(session, pid), "consent": consent(session, pid)}


def lifecycle_stage(session: Session, profile_id: str) -> dict | None:
    row = session.get(LifecycleStage, profile_id)
    return {"stage": row.stage, "since": format_time(row.since), "why": row.why} if row else None


def consent(session: Session, profile_id: str) -> dict:
    """Each purpose: given or not, when and from which source."""
    given = traits_by_profile(session, [profile_id], ProfileConsent)[profile_id]
    return {p: {"given": c.value, "at": format_time(c.at), "source_id": c.source} for p, c in sorted(given.items())}


@dataclass(frozen=True)
class TimelineQuery:
    type: str | None = None
    event: str | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def encode_cursor(event: ProfileEvent) -> str:
    return base64.urlsafe_b64encode(json.dumps([format_time(event.timestamp), event.message_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, message_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return parse_time(at), message_id
    except (ValueError, TypeError) as error:
        raise ApiError(400, "invalid_cursor", f"next: not a cursor this API gave out ({error})", "next") from None


def timeline_page(session: Session, profile_id: str, query: TimelineQuery) -> tuple[list[ProfileEvent], str | None]:
    """Newest first; the cursor is the last (time, messageId) seen, so pages stay stable."""
    e = ProfileEvent
    statement = select(e).where(e.profile_id == profile_id)
    for column, wanted in ((e.type, query.type), (e.name, query.event), (e.channel, query.channel)):
        if wanted is not None:
            statement = statement.where(column == wanted)
    if query.since:
        statement = statement.where(e.timestamp >= query.since)
    if query.until:
        statement = statement.where(e.timestamp < query.until)
    if query.cursor:
        at, message_id = decode_cursor(query.cursor)
        statement = statement.where(or_(e.timestamp < at, and_(e.timestamp == at, e.message_id < message_id)))
    rows = list(session.scalars(statement.order_by(e.timestamp.desc(), e.message_id.desc()).limit(query.limit + 1)))
    page = rows[:query.limit]
    return page, encode_cursor(page[-1]) if len(rows) > query.limit else None


def event_view(event: ProfileEvent) -> dict:
    return {"message_id": event.message_id, "type": event.type, "event": event.name,
            "timestamp": format_time(event.timestamp), "properties": event.properties,
            "source_id": event.source, "channel": event.channel}
