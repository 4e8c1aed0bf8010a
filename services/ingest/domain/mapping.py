"""Webhook payloads to Segment-format messages, by a declarative mapping (no code).

A mapping is JSON: `message` is a template of the message to make. In it a string
starting with `$` is a path into the payload (`$customer.id`, `$line_items.0.sku`),
any other value is a literal, and an object may ask for more:

- `{"path": "$total_price", "as": "number"}`: convert (number, string, lower, epoch_ms);
  `"prefix": "x:"` puts text before it;
- `{"each": "$line_items", "fields": {...}}`: a list, one template per item (paths
  inside are relative to the item);
- `{"cases": [{"if": {"$type": "a"}, "then": "A"}, {"then": "B"}]}`: the first case
  whose paths hold the value (or one of a list of values) wins.

`each` at the top of a mapping makes one message per item of that list.
A path that is missing leaves its field out.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.runtime.clock import format_time

MISSING = object()


def messages_from(mapping: dict, payload: Any) -> list[dict]:
    """The messages a mapping makes of one webhook payload."""
    roots = _resolve(mapping["each"], payload) if mapping.get("each") else [payload]
    if not isinstance(roots, list):
        return []
    return [message for root in roots
            if isinstance(message := _fill(mapping["message"], root), dict)]


def _fill(template: Any, data: Any) -> Any:
    if isinstance(template, str):
        return _resolve(template, data) if template.startswith("$") else template
    if isinstance(template, list):
        return [v for v in (_fill(t, data) for t in template) if v is not MISSING]
    if not isinstance(template, dict):
        return template
    if "path" in template:
        return _converted(_resolve(template["path"], data), template)
    if "each" in template:
        items = _resolve(template["each"], data)
        return [_fill(template["fields"], item) for item in items] if isinstance(items, list) else MISSING
    if "cases" in template:
        return next((_fill(case["then"], data) for case in template["cases"]
                     if _holds(case.get("if", {}), data)), MISSING)
    filled = {name: _fill(value, data) for name, value in template.items()}
    return {name: value for name, value in filled.items() if value is not MISSING}


def _resolve(path: str, data: Any) -> Any:
    """`$a.b.0.c` in `data`, or MISSING."""
    value = data
    for step in filter(None, path.removeprefix("$").split(".")):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return MISSING
    return MISSING if value is None else value


def _holds(condition: dict, data: Any) -> bool:
    def matches(path: str, wanted: Any) -> bool:
        value = _resolve(path, data)
        return value in wanted if isinstance(wanted, list) else value == wanted
    return all(matches(path, wanted) for path, wanted in condition.items())


CONVERSIONS = {
    "number": lambda v: float(v) if not isinstance(v, (int, float)) else v,
    "string": str,
    "lower": lambda v: str(v).lower(),
    "epoch_ms": lambda v: format_time(datetime.fromtimestamp(int(v) / 1000, timezone.utc)),
}


def _converted(value: Any, template: dict) -> Any:
    if value is MISSING:
        return MISSING
    try:
        value = CONVERSIONS[template["as"]](value) if "as" in template else value
    except (TypeError, ValueError, OverflowError):
        return MISSING  # a field that can't be read is left out; validation names what's missing
    return f"{template['prefix']}{value}" if "prefix" in template else value
