"""Read profiles over HTTP."""
from __future__ import annotations

from fastapi import APIRouter

from services.profile.handler import snapshot, survivor_of
from services.profile.tables import Profile
from services.runtime.access import ProfilesRead
from services.runtime.http import ApiError, ReadSession

router = APIRouter(tags=["profiles"])


@router.get("/v1/profiles/{profile_id}")
def get_profile(profile_id: str, session: ReadSession, _: ProfilesRead) -> dict:
    """A profile by id; an absorbed id answers with the profile it was merged into."""
    survivor = survivor_of(session, profile_id)
    if session.get(Profile, survivor) is None:
        raise ApiError(404, "not_found", f"no profile {profile_id!r}", "profile_id")
    return snapshot(session, survivor) | {"requested_id": profile_id}
