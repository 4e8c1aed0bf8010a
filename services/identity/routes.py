"""Identity over HTTP: a profile's identities and history; unmerge; the rules in force."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import Rules
from services.identity.operations import NotFound, describe, unmerge
from services.runtime.access import ProfilesRead, require
from services.runtime.db import writing
from services.runtime.http import ApiError, EngineDep, LogDep, ReadSession

Admin = Annotated[None, require("admin")]


class Unmerge(BaseModel):
    type: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=512)
    action: Literal["remove", "block"] = "remove"
    reason: str = Field("", max_length=1000)


def router_for(rules: Rules) -> APIRouter:
    router = APIRouter(tags=["identity"])

    @router.get("/v1/identity/profiles/{profile_id}")
    def get_identity(profile_id: str, session: ReadSession, _: ProfilesRead) -> dict:
        """Identities, merges, splits and refused merges of a profile; an absorbed id answers
        with the profile it now reads as."""
        try:
            return describe(session, profile_id)
        except NotFound as error:
            raise ApiError(404, "not_found", str(error), "profile_id") from None

    @router.post("/v1/identity/profiles/{profile_id}/unmerge")
    def post_unmerge(profile_id: str, body: Unmerge, engine: EngineDep, log: LogDep, _: Admin) -> dict:
        """Split an identifier off a profile (remove) or stop it identifying anyone (block)."""
        try:
            with writing(engine) as session:
                return unmerge(session, log, rules, profile_id, Identifier(body.type, body.value),
                               body.action, body.reason)
        except NotFound as error:
            raise ApiError(404, "not_found", str(error), "value") from None

    @router.get("/v1/identity/rules")
    def get_rules(_: Admin) -> dict:
        return rules.as_json()

    return router
