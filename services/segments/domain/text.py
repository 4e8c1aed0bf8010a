"""The text form of conditions: parse() builds the JSON tree, to_text() prints it back.

to_text(parse(text)) is canonical, and parse(to_text(tree)) == normalise(tree).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput

from services.segments.domain.conditions import ConditionError, normalise

PARSER = Lark((Path(__file__).parent / "grammar.lark").read_text(), parser="lalr")
KEYWORDS = {"and", "or", "not", "did", "stage", "consent", "in_segment", "exists", "contains", "true",
            "false", "null", "at", "least", "times", "within", "where", "traits", "computed"}
BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@v_args(inline=True)
class _ToTree(Transformer):
    def or_expr(self, *parts):
        return {"or": list(parts)}

    def and_expr(self, *parts):
        return {"and": list(parts)}

    def negation(self, part):
        return {"not": part}

    def comparison(self, path, op, value):
        return path | {"op": str(op), "value": value}

    def exists(self, path):
        return path | {"op": "exists"}

    def path(self, first, second=None):
        if second is None:
            return {"computed": str(first)}
        if str(first) not in ("traits", "computed"):
            raise ConditionError("condition", f"{first}.{second}: a path starts with traits. or computed.")
        return {"trait" if str(first) == "traits" else "computed": str(second)}

    def event(self, name, *options):
        event: dict[str, Any] = {"event": json.loads(name)}
        for option in options:
            if isinstance(option, Token) and option.type == "INT":
                event["at_least"] = int(option)
            elif isinstance(option, Token) and option.type == "WINDOW":
                event["within"] = str(option)
            elif isinstance(option, tuple):
                event.setdefault("where", {})[option[0]] = option[1]
        return event

    def equality(self, name, value):
        return (str(name), value)

    def stage(self, name):
        return {"stage": json.loads(name)}

    def consent(self, name):
        return {"consent": str(name)}

    def in_segment(self, name):
        return {"in_segment": json.loads(name)}

    def string(self, token):
        return json.loads(token)

    def number(self, token):
        return float(token) if any(c in token for c in ".eE") else int(token)

    def true(self):
        return True

    def false(self):
        return False

    def null(self):
        return None


def parse(text: str) -> dict:
    """The canonical JSON tree of a text condition, or a ConditionError pointing at the problem."""
    try:
        tree = PARSER.parse(text)
    except UnexpectedInput as error:
        raise ConditionError(f"text:{error.line}:{error.column}",
                             f"unexpected input near {text[max(error.pos_in_stream or 0, 0):][:20]!r}") from None
    except LarkError as error:
        raise ConditionError("text", str(error)) from None
    try:
        return normalise(_ToTree().transform(tree))
    except LarkError as error:  # a ConditionError raised inside the transformer arrives wrapped
        cause = error.__context__
        raise cause if isinstance(cause, ConditionError) else ConditionError("text", str(error)) from None


def _value(value: Any) -> str:
    return json.dumps(value)


def _bare(name: str) -> str:
    if not BARE_NAME.match(name) or name in KEYWORDS:
        raise ConditionError("condition", f"{name!r} can't be written in the text form")
    return name


def _path(name: str, kind: str) -> str:
    if kind == "computed" and BARE_NAME.match(name) and name not in KEYWORDS:
        return name
    if not BARE_NAME.match(name):
        raise ConditionError("condition", f"{name!r} can't be written in the text form")
    return f"{'traits' if kind == 'trait' else 'computed'}.{name}"


def to_text(condition: dict, parent: str | None = None) -> str:
    """The text form of a (canonical) condition; parentheses only where needed."""
    condition = normalise(condition) if parent is None else condition
    for kind in ("or", "and"):
        if kind in condition:
            text = f" {kind} ".join(to_text(part, kind) for part in condition[kind])
            return f"({text})" if parent in ("and", "not") or (parent == kind) else text
    if "not" in condition:
        return f"not {to_text(condition['not'], 'not')}"
    if "trait" in condition or "computed" in condition:
        kind = "trait" if "trait" in condition else "computed"
        path = _path(condition[kind], kind)
        if condition["op"] == "exists":
            return f"{path} exists"
        return f"{path} {condition['op']} {_value(condition['value'])}"
    if "event" in condition:
        text = f"did {_value(condition['event'])}"
        if condition.get("at_least", 1) != 1:
            text += f" at least {condition['at_least']} times"
        if "within" in condition:
            text += f" within {condition['within']}"
        if condition.get("where"):
            text += " where {" + ", ".join(f"{_bare(k)} = {_value(v)}"
                                           for k, v in condition["where"].items()) + "}"
        return text
    if "stage" in condition:
        return f"stage = {_value(condition['stage'])}"
    if "consent" in condition:
        return f"consent.{_bare(condition['consent'])}"
    return f"in_segment({_value(condition['in_segment'])})"
