"""Segment conditions: checked when a segment is defined (errors name the path), evaluated on traits."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segments.domain.conditions import ConditionError, evaluate, validate

FAST = settings(max_examples=200, deadline=None, database=None)

PRO = {"trait": "plan", "equals": "pro"}
OSLO = {"trait": "city", "equals": "Oslo"}


# --- validate: good definitions -------------------------------------------------------------

@pytest.mark.parametrize("condition", [
    PRO,
    {"trait": "vip", "equals": True},
    {"trait": "deleted_at", "equals": None},
    {"trait": "tags", "equals": ["a", "b"]},
    {"not": PRO},
    {"and": [PRO]},
    {"or": [PRO, OSLO]},
    {"and": [{"or": [PRO, {"not": OSLO}]}, {"not": {"not": {"trait": "age", "equals": 30}}}]},
])
def test_well_formed_conditions_are_accepted(condition):
    assert validate(condition) is None


# --- validate: errors carry the path --------------------------------------------------------

@pytest.mark.parametrize("condition, path", [
    ("plan = pro", "condition"),
    (None, "condition"),
    ([PRO], "condition"),
    ({}, "condition"),
    ({"equals": "pro"}, "condition"),
    ({"trait": "plan", "and": [PRO]}, "condition"),
    ({"and": [PRO], "or": [PRO]}, "condition"),
    ({"where": "plan"}, "condition"),
    ({"trait": "", "equals": "pro"}, "condition.trait"),
    ({"trait": 7, "equals": "pro"}, "condition.trait"),
    ({"trait": None, "equals": "pro"}, "condition.trait"),
    ({"trait": "plan"}, "condition.op"),
    ({"and": []}, "condition.and"),
    ({"or": PRO}, "condition.or"),
    ({"and": "x"}, "condition.and"),
    ({"not": None}, "condition.not"),
    ({"not": {"trait": "plan"}}, "condition.not.op"),
    ({"and": [PRO, {"trait": ""}]}, "condition.and[1].trait"),
    ({"and": [PRO, {"trait": 3, "equals": 1}]}, "condition.and[1].trait"),
    ({"or": [PRO, OSLO, {"nope": 1}]}, "condition.or[2]"),
    ({"and": [{"or": [PRO, {"not": {"and": []}}]}]}, "condition.and[0].or[1].not.and"),
])
def test_a_bad_definition_is_refused_with_the_path_to_the_offending_part(condition, path):
    with pytest.raises(ConditionError) as raised:
        validate(condition)
    assert raised.value.path == path
    assert str(raised.value) == f"{path}: {raised.value.message}"
    assert raised.value.message


def test_an_unknown_operator_is_named_in_the_error():
    with pytest.raises(ConditionError, match="unknown operator 'contains'"):
        validate({"contains": "pro"})


def test_a_condition_error_is_a_value_error():
    assert issubclass(ConditionError, ValueError)


def test_the_root_of_the_path_can_be_chosen():
    with pytest.raises(ConditionError) as raised:
        validate({"not": {"trait": ""}}, "segment.vip")
    assert raised.value.path == "segment.vip.not.trait"


def test_the_first_bad_part_of_a_list_is_reported():
    with pytest.raises(ConditionError) as raised:
        validate({"or": [PRO, {"trait": "a"}, {"trait": ""}]})
    assert raised.value.path == "condition.or[1].op"


# --- property: a bad part anywhere in a tree is reported at its path -------------------------

trait_names = st.sampled_from(["plan", "city", "age", "vip"])
trait_values = st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.sampled_from(["pro", "free", "Oslo"]))
leaves = st.builds(lambda name, value: {"trait": name, "equals": value}, trait_names, trait_values)
conditions = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda c: {"not": c}, children),
        st.builds(lambda cs: {"and": cs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda cs: {"or": cs}, st.lists(children, min_size=1, max_size=3)),
    ),
    max_leaves=12,
)

bad_leaves = st.sampled_from([
    ({"trait": ""}, ".trait"), ({"trait": "plan"}, ".op"), ({"and": []}, ".and"),
    ({"or": {}}, ".or"), ("plan", ""), (42, ""), ({"is": "pro"}, ""), ({"equals": 1}, ""),
])


@st.composite
def with_bad_part(draw, inner):
    child, suffix = draw(inner)
    kind = draw(st.sampled_from(["not", "and", "or"]))
    if kind == "not":
        return {"not": child}, ".not" + suffix
    before = draw(st.lists(conditions, max_size=2))
    after = draw(st.lists(conditions | bad_leaves.map(lambda b: b[0]), max_size=2))
    return {kind: before + [child] + after}, f".{kind}[{len(before)}]" + suffix


bad_trees = st.recursive(bad_leaves, with_bad_part, max_leaves=6)


@FAST
@given(conditions)
def test_generated_conditions_are_valid(condition):
    validate(condition)


@FAST
@given(bad_trees)
def test_a_bad_part_anywhere_is_reported_at_its_path(tree_and_suffix):
    tree, suffix = tree_and_suffix
    with pytest.raises(ConditionError) as raised:
        validate(tree)
    assert raised.value.path == "condition" + suffix


# --- evaluate -------------------------------------------------------------------------------

def test_trait_equality_matches_a_profile_with_that_value():
    assert evaluate(PRO, {"plan": "pro"})
    assert not evaluate(PRO, {"plan": "free"})


def test_a_missing_trait_never_equals_anything():
    assert not evaluate(PRO, {})
    assert not evaluate({"trait": "plan", "equals": None}, {})


def test_equality_is_exact_not_case_or_type_insensitive():
    assert not evaluate(PRO, {"plan": "Pro"})
    assert not evaluate({"trait": "age", "equals": 30}, {"age": "30"})
    assert evaluate({"trait": "tags", "equals": ["a", "b"]}, {"tags": ["a", "b"]})
    assert not evaluate({"trait": "tags", "equals": ["a", "b"]}, {"tags": ["b", "a"]})


def test_and_needs_every_part_or_needs_one_not_inverts():
    pro_in_oslo = {"plan": "pro", "city": "Oslo"}
    pro_in_rome = {"plan": "pro", "city": "Rome"}
    assert evaluate({"and": [PRO, OSLO]}, pro_in_oslo)
    assert not evaluate({"and": [PRO, OSLO]}, pro_in_rome)
    assert evaluate({"or": [OSLO, PRO]}, pro_in_rome)
    assert not evaluate({"or": [OSLO, {"trait": "plan", "equals": "free"}]}, pro_in_rome)
    assert evaluate({"not": OSLO}, pro_in_rome)
    assert not evaluate({"not": PRO}, pro_in_rome)


def test_a_nested_segment_definition_is_evaluated_as_a_whole():
    churn_risk = {"and": [{"or": [PRO, {"trait": "plan", "equals": "team"}]}, {"not": {"trait": "active",
                                                                                        "equals": True}}]}
    assert evaluate(churn_risk, {"plan": "team", "active": False})
    assert evaluate(churn_risk, {"plan": "pro"})
    assert not evaluate(churn_risk, {"plan": "pro", "active": True})
    assert not evaluate(churn_risk, {"plan": "free", "active": False})


profiles = st.dictionaries(trait_names, trait_values, max_size=4)


@FAST
@given(conditions, profiles)
def test_not_c_holds_exactly_when_c_does_not(condition, traits):
    assert evaluate({"not": condition}, traits) is (not evaluate(condition, traits))


@FAST
@given(st.lists(conditions, min_size=1, max_size=4), profiles)
def test_and_or_follow_de_morgan(parts, traits):
    assert evaluate({"not": {"and": parts}}, traits) == evaluate({"or": [{"not": p} for p in parts]}, traits)
    assert evaluate({"not": {"or": parts}}, traits) == evaluate({"and": [{"not": p} for p in parts]}, traits)
    assert evaluate({"and": parts}, traits) == all(evaluate(p, traits) for p in parts)
    assert evaluate({"or": parts}, traits) == any(evaluate(p, traits) for p in parts)


@FAST
@given(conditions, profiles)
def test_evaluation_always_answers_a_boolean_and_reads_only_traits(condition, traits):
    snapshot = dict(traits)
    assert isinstance(evaluate(condition, traits), bool)
    assert traits == snapshot


# --- once bugs: kept so they stay fixed -----------------------------------------------------

@pytest.mark.parametrize("equals, trait", [(1, True), (True, 1), (0, False), (False, 0), (1.0, True)])
def test_a_boolean_trait_does_not_equal_a_number(equals, trait):
    assert not evaluate({"trait": "beta", "equals": equals}, {"beta": trait})


def test_an_unknown_operator_next_to_equals_is_the_one_named():
    with pytest.raises(ConditionError, match="'contains'"):
        validate({"equals": "pro", "contains": "pro"})
