"""Renders a compiled predicate (domain/predicate.py) as a SQL condition on segment_profiles.

JSON is read per dialect: PostgreSQL's jsonb operators, SQLite's json_type/json_extract.
Types are checked before values, and every leaf is wrapped in COALESCE(.., false), so a
missing name or a null never turns a NOT into unknown.
"""
from __future__ import annotations

import json

from sqlalchemy import Numeric, String, and_, case, cast, exists, false, func, literal, not_, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from services.segments.domain.predicate import AllOf, AnyOf, JsonTest, MemberOf, Negated, Predicate, StageIs
from services.segments.tables import SegmentMember, SegmentProfile

ORDER = {">": "__gt__", ">=": "__ge__", "<": "__lt__", "<=": "__le__"}
_NUMERIC = Numeric()


def to_sql(predicate: Predicate, dialect: str) -> ColumnElement:
    if isinstance(predicate, AllOf):
        return and_(*(to_sql(p, dialect) for p in predicate.parts))
    if isinstance(predicate, AnyOf):
        return or_(*(to_sql(p, dialect) for p in predicate.parts))
    if isinstance(predicate, Negated):
        return not_(to_sql(predicate.part, dialect))
    if isinstance(predicate, StageIs):
        return func.coalesce(SegmentProfile.stage == predicate.stage, false())
    if isinstance(predicate, MemberOf):
        return exists().where(SegmentMember.segment_key == predicate.segment,
                              SegmentMember.profile_id == SegmentProfile.profile_id)
    leaf = (_postgres if dialect == "postgresql" else _sqlite)(predicate)
    return func.coalesce(leaf, false())


def _postgres(t: JsonTest) -> ColumnElement:
    document, name = getattr(SegmentProfile, t.document), literal(t.name, String)
    value, text = document.op("->")(name), document.op("->>", return_type=String)(name)
    kind = func.jsonb_typeof(value)
    if t.test == "present":
        return value.is_not(None)
    if t.test == "not_null":
        return and_(kind.is_not(None), kind != "null")
    if t.test == "equals":
        if _text_only(t.value):  # ->> needs no jsonb built and compared: about half the scan's time
            return text == t.value
        return value == _jsonb(t.value)
    if t.test == "text_contains":
        return and_(kind == "string", func.strpos(text, t.value) > 0)
    if t.test == "element":
        element = func.jsonb_array_elements(value).table_valued("value").alias("element")
        return and_(kind == "array", exists(select(literal(1)).select_from(element)
                                            .where(element.c.value == _jsonb(t.value))))
    if t.test == "number":  # as exact decimals: a float's shortest repr, as the JSON holds it
        number = case((kind == "number", cast(text, _NUMERIC)))
        return getattr(number, ORDER[t.op])(cast(repr(t.value), _NUMERIC))
    return getattr(case((kind == "string", text.collate("C"))), ORDER[t.op])(t.value)


def _text_only(value) -> bool:
    """Whether `doc ->> name = value` holds for the string `value` alone. ->> gives a string's
    text, but any other JSON value's JSON text (5, true, [1], {"a": 1}); null gives SQL NULL.
    So a string that isn't JSON text, or is the JSON text of a string, can only match a string
    (text equality is bytewise under PostgreSQL's deterministic collations)."""
    if not isinstance(value, str):
        return False
    try:
        return isinstance(json.loads(value), str)
    except ValueError:
        return True


def _jsonb(value) -> ColumnElement:
    return cast(literal(json.dumps(value), String), JSONB)


def _sqlite(t: JsonTest) -> ColumnElement:
    document = getattr(SegmentProfile, t.document)
    path = f'$."{t.name}"'
    kind, value = func.json_type(document, path), func.json_extract(document, path)
    if t.test == "present":
        return kind.is_not(None)
    if t.test == "not_null":
        return and_(kind.is_not(None), kind != "null")
    if t.test == "equals":
        return _sqlite_equals(kind, value, t.value)
    if t.test == "text_contains":
        return and_(kind == "text", func.instr(value, t.value) > 0)
    if t.test == "element":
        element = func.json_each(document, path).table_valued("type", "value").alias("element")
        return and_(kind == "array", exists(select(literal(1)).select_from(element)
                                            .where(_sqlite_equals(element.c.type, element.c.value, t.value))))
    wanted = ("integer", "real") if t.test == "number" else ("text",)
    return and_(kind.in_(wanted), getattr(value, ORDER[t.op])(t.value))


def _sqlite_equals(kind, value, expected) -> ColumnElement:
    if expected is None:
        return kind == "null"
    if isinstance(expected, bool):
        return kind == ("true" if expected else "false")
    if isinstance(expected, str):
        return and_(kind == "text", value == expected)
    return and_(kind.in_(("integer", "real")), value == expected)

