"""Validation of Segment-format messages into the canonical event written to events.raw."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.runtime.clock import format_time

MAX_ID_LENGTH = 512


class Rejection(ValueError):
    """Why a message can't be accepted: the field and the rule it breaks."""

    def __init__(self, field: str, rule: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.rule, self.message = field, rule, f"{field}: {message}"

    def as_error(self) -> dict:
        return {"code": self.rule, "message": self.message, "field": self.field}


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | None = Field(None, max_length=MAX_ID_LENGTH)
    anonymousId: str | None = Field(None, max_length=MAX_ID_LENGTH)
    messageId: str | None = Field(None, max_length=200)
    timestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @field_validator("userId", "anonymousId", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return str(value)  # SDKs send numeric ids
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("context")
    @classmethod
    def _context_traits_object(cls, context: dict[str, Any]) -> dict[str, Any]:
        if "traits" in context and not isinstance(context["traits"], dict):
            raise ValueError("context.traits must be an object")
        return context

    @model_validator(mode="after")
    def _someone(self):
        if self.userId is None and self.anonymousId is None:
            raise ValueError("userId or anonymousId is required")
        return self


class Track(_Message):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class Identify(_Message):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


KINDS: dict[str, type[_Message]] = {"track": Track, "identify": Identify}


def canonical(kind: str, body: Any, source_id: str, received_at: datetime) -> dict:
    """The event as written to the log, or a Rejection naming the field and the rule."""
    if not isinstance(body, dict):
        raise Rejection("body", "type", "must be a JSON object")
    try:
        message = KINDS[kind].model_validate({**body, "type": kind})
    except ValidationError as error:
        raise _first(error) from None
    event = message.model_dump(mode="json", exclude_none=True)
    event["messageId"] = message.messageId or str(uuid.uuid4())
    event["receivedAt"] = format_time(received_at)
    event["timestamp"] = format_time(message.timestamp or received_at)
    event["sourceId"] = source_id
    return event


def _first(error: ValidationError) -> Rejection:
    detail = error.errors()[0]
    field = ".".join(str(part) for part in detail["loc"]) or "userId"
    return Rejection(field, detail["type"], detail["msg"].removeprefix("Value error, "))


def partition_key(event: dict) -> str:
    """One person's events share a key, so they keep their order in the log."""
    return event.get("userId") or event["anonymousId"]
