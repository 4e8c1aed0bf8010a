"""Identity over HTTP: a profile's identities and merge history; unmerge; the rules in force."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import Rules, build_rules
from services.identity.operations import NotFound, describe, unmerge
from services.identity.store import configured_rules, save_rules
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
    """`rules`: the file's (or the defaults); an admin's rules, once stored, replace them."""
    router = APIRouter(tags=["identity"])

    def described(session, profile_id: str, *parts: str) -> dict:
        try:
            found = describe(session, profile_id)
        except NotFound as error:
            raise ApiError(404, "not_found", str(error), "profile_id") from None
        return {k: v for k, v in found.items() if not parts or k in ("profile_id", "requested_id", *parts)}

    @router.get("/v1/identity/profiles/{profile_id}")
    def get_identity(profile_id: str, session: ReadSession, _: ProfilesRead) -> dict:
        """Identities, merges, splits and refused merges of a profile; an absorbed id answers
        with the profile it now reads as."""
        return described(session, profile_id)

    @router.get("/v1/profiles/{profile_id}/identities")
    def get_identities(profile_id: str, session: ReadSession, _: ProfilesRead) -> dict:
        """The identifiers of a profile (an absorbed id answers with its survivor)."""
        return described(session, profile_id, "identities")

    @router.get("/v1/profiles/{profile_id}/merges")
    def get_merges(profile_id: str, session: ReadSession, _: ProfilesRead) -> dict:
        """Merge history with its evidence (the causing event's messageId and identifiers),
        splits and refused merges."""
        return described(session, profile_id, "merges", "splits", "refused_merges")

    @router.post("/v1/identity/profiles/{profile_id}/unmerge")
    @router.post("/v1/profiles/{profile_id}/unmerge")
    def post_unmerge(profile_id: str, body: Unmerge, engine: EngineDep, log: LogDep, _: Admin) -> dict:
        """Split an identifier off a profile (remove) or stop it identifying anyone (block)."""
        try:
            with writing(engine) as session:
                return unmerge(session, log, rules, profile_id, Identifier(body.type, body.value),
                               body.action, body.reason)
        except NotFound as error:
            raise ApiError(404, "not_found", str(error), "value") from None

    @router.get("/v1/identity/rules")
    def get_rules(session: ReadSession, _: Admin) -> dict:
        return configured_rules(session, rules).as_json()

    @router.put("/v1/identity/rules")
    def put_rules(document: Annotated[dict[str, Any], Body()], engine: EngineDep, _: Admin) -> dict:
        """Replace the rules (a document as in the rules file, applied over the defaults) for
        every identity worker; they apply to events resolved from then on."""
        try:
            new = build_rules(document)
        except ValueError as error:
            raise ApiError(422, "invalid_rules", str(error), "body") from None
        with writing(engine) as session:
            save_rules(session, new)
        return new.as_json()

    return router
