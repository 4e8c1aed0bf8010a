"""Validation of Segment-format messages into the canonical event written to events.raw."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from services.ingest.domain.wire import MAX_EVENT_BYTES, corrected_timestamp, size_of
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
    sentAt: datetime | None = None
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


class Page(_Message):
    """A web page viewed (Segment's page call)."""

    type: Literal["page"] = "page"
    name: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(Page):
    """A mobile app screen viewed (Segment's screen call)."""

    type: Literal["screen"] = "screen"


class Group(_Message):
    """A person belongs to a company or account."""

    type: Literal["group"] = "group"
    groupId: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    traits: dict[str, Any] = Field(default_factory=dict)

    _group_id_as_text = field_validator("groupId", mode="before")(_Message._ids_as_text.__func__)


class Alias(_Message):
    """A person's earlier id (previousId) is the same person as userId."""

    type: Literal["alias"] = "alias"
    previousId: str = Field(min_length=1, max_length=MAX_ID_LENGTH)

    _previous_id_as_text = field_validator("previousId", mode="before")(_Message._ids_as_text.__func__)


KINDS: dict[str, type[_Message]] = {"track": Track, "identify": Identify, "page": Page,
                                    "screen": Screen, "group": Group, "alias": Alias}


def canonical(kind: str, body: Any, source_id: str, received_at: datetime) -> dict:
    """The event as written to the log, or a Rejection naming the field and the rule."""
    size, plain = size_of(body)
    if size > MAX_EVENT_BYTES:
        raise Rejection("body", "too_large", f"an event may be at most {MAX_EVENT_BYTES // 1024} KB")
    if not isinstance(body, dict):
        raise Rejection("body", "type", "must be a JSON object")
    try:
        message = KINDS[kind].model_validate({**body, "type": kind})
    except ValidationError as error:
        raise _first(error) from None
    event = _fields(message) if plain else _serialised(message)
    event["messageId"] = message.messageId or str(uuid.uuid4())
    event["receivedAt"] = _received_text(received_at)
    event["timestamp"] = format_time(corrected_timestamp(message.timestamp, message.sentAt, received_at))
    if message.timestamp is not None and message.sentAt is not None:
        event["originalTimestamp"] = format_time(message.timestamp)
        event["sentAt"] = format_time(message.sentAt)
    event["sourceId"] = source_id
    return event


def _fields(message: _Message) -> dict:
    """What `_serialised` answers for a body of plain JSON, a third as fast: the validated
    fields and the extra ones as they are, None left out (nested values are already JSON)."""
    event = {name: value for name, value in message.__dict__.items() if value is not None}
    event.update((name, value) for name, value in message.__pydantic_extra__.items() if value is not None)
    if "sentAt" in event:  # a datetime; replaced by the caller when there is a timestamp
        event["sentAt"] = _JSON_TIME.dump_python(event["sentAt"], mode="json")
    return event


_JSON_TIME = TypeAdapter(datetime)


def _serialised(message: _Message) -> dict:
    """The message as JSON values (datetimes as text, ...), None fields left out."""
    try:
        return message.model_dump(mode="json", exclude_none=True)
    except ValueError:  # pydantic's serializer stops at a depth of 255 ("Maximum serialization depth")
        raise Rejection("body", "too_deep", "objects and lists may nest at most 250 levels deep") from None


_last_received: tuple[datetime | None, str] = (None, "")


def _received_text(received_at: datetime) -> str:
    """format_time(received_at), formatted once for all the events of a request."""
    global _last_received
    last = _last_received
    if last[0] is received_at:
        return last[1]
    text = format_time(received_at)
    _last_received = (received_at, text)
    return text


def _first(error: ValidationError) -> Rejection:
    detail = error.errors()[0]
    field = ".".join(str(part) for part in detail["loc"]) or "userId"
    return Rejection(field, detail["type"], detail["msg"].removeprefix("Value error, "))


def partition_key(event: dict) -> str:
    """One person's events share a key, so they keep their order in the log."""
    return event.get("userId") or event["anonymousId"]
