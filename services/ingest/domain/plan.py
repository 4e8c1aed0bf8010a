"""The tracking plan: which events a source may send and what their fields must hold.

A plan is built from the event catalogue (JSON Schemas, see schemas/events/). Each
source has a mode: `allow` (no checks), `warn` (violations ride along on the event in
context.violations and are recorded) or `block` (an event with violations goes to
events.rejected instead of events.raw).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from jsonschema import Draft202012Validator, FormatChecker

MODES = ("allow", "warn", "block")
# which part of a call its catalogue schema describes
DESCRIBED = {"track": "properties", "page": "properties", "screen": "properties",
             "identify": "traits", "group": "traits"}


@dataclass(frozen=True)
class Violation:
    type: str  # unplanned_event, or the JSON Schema keyword broken (required, type, format, ...)
    field: str
    description: str

    def as_dict(self) -> dict:
        return asdict(self)


class TrackingPlan:
    """Schemas by (call, event name); page, screen, identify and group have one schema each."""

    def __init__(self, schemas: list[dict]):
        self.validators: dict[tuple[str, str | None], Draft202012Validator] = {}
        for schema in schemas:
            planned = schema.get("x-rapport", {})
            key = (planned["call"], planned.get("event"))
            self.validators[key] = Draft202012Validator(schema, format_checker=FormatChecker())

    def events(self) -> list[str]:
        return sorted(event for (_call, event) in self.validators if event)

    def violations(self, event: dict) -> list[Violation]:
        call = event.get("type")
        name = event.get("event") if call == "track" else None
        validator = self.validators.get((call, name))
        if validator is None:
            if call == "track":
                return [Violation("unplanned_event", "event", f"{name!r} is not in the tracking plan")]
            return []
        part = DESCRIBED[call]
        return [Violation(error.validator, _field(part, error.absolute_path, error), error.message)
                for error in sorted(validator.iter_errors(event.get(part, {})), key=lambda e: e.path)]


def _field(part: str, path, error) -> str:
    names = [part, *(str(p) for p in path)]
    if error.validator == "required":  # the missing name is in the message, not the path
        names.append(error.message.split("'")[1])
    return ".".join(names)


def with_violations(event: dict, violations: list[Violation]) -> dict:
    """The event carrying its violations in context.violations (warn mode)."""
    context = {**event.get("context", {}), "violations": [v.as_dict() for v in violations]}
    return {**event, "context": context}


def blocks(mode: str, violations: list[Violation]) -> bool:
    return mode == "block" and bool(violations)


def checked(mode: str) -> bool:
    return mode in ("warn", "block")


def describe(violations: list[Violation]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in violations)
