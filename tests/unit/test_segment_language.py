"""The segment condition language: the text form round-trips; evaluation and reads."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segments.domain.conditions import (ConditionError, ProfileFacts, check_references, evaluate,
                                                 event_trait, normalise, reads)
from services.segments.domain.text import KEYWORDS, parse, to_text

names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
any_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
values = st.one_of(st.text(max_size=12), st.integers(-10**9, 10**9), st.booleans(), st.none(),
                   st.floats(allow_nan=False, allow_infinity=False, width=32))
ordered = st.one_of(st.text(max_size=8), st.integers(-1000, 1000))


def comparison(kind):
    return st.one_of(
        st.builds(lambda n, op, v: {kind: n, "op": op, "value": v}, any_name, st.sampled_from(["=", "!="]), values),
        st.builds(lambda n, op, v: {kind: n, "op": op, "value": v}, any_name,
                  st.sampled_from([">", ">=", "<", "<=", "contains"]), ordered),
        st.builds(lambda n: {kind: n, "op": "exists"}, any_name))


events = st.builds(lambda e, n, w, where: {"event": e, "at_least": n, **({"within": w} if w else {}),
                                           **({"where": where} if where else {})},
                   st.text(min_size=1, max_size=15), st.integers(1, 50),
                   st.one_of(st.none(), st.from_regex(r"[1-9][0-9]{0,2}[mhdw]", fullmatch=True)),
                   st.dictionaries(names, values, max_size=2))
leaves = st.one_of(comparison("trait"), comparison("computed"), events,
                   st.builds(lambda s: {"stage": s}, st.text(min_size=1, max_size=10)),
                   st.builds(lambda c: {"consent": c}, names),
                   st.builds(lambda s: {"in_segment": s}, st.text(min_size=1, max_size=10)))
trees = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda c: {"not": c}, inner),
    st.builds(lambda cs: {"and": cs}, st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda cs: {"or": cs}, st.lists(inner, min_size=2, max_size=3))), max_leaves=10)


@settings(max_examples=300, deadline=None, database=None)
@given(trees)
def test_the_text_form_round_trips(tree):
    canonical = normalise(tree)
    text = to_text(canonical)
    assert parse(text) == canonical
    assert to_text(parse(text)) == text


def test_the_documented_example_parses_to_its_tree():
    tree = parse('orders_30d >= 2 and traits.country = "DE" and consent.email and not in_segment("vip")')
    assert tree == {"and": [{"computed": "orders_30d", "op": ">=", "value": 2},
                            {"trait": "country", "op": "=", "value": "DE"}, {"consent": "email"},
                            {"not": {"in_segment": "vip"}}]}


@pytest.mark.parametrize("text, path", [
    ('traits.plan = ', "text:1:13"), ('foo.bar = 1', "condition"), ('did "X" within 0d', "condition.within"),
    ('traits.plan > true', "condition.value"), ('did "X" at least 0 times', "condition.at_least")])
def test_a_bad_text_points_at_the_problem(text, path):
    with pytest.raises(ConditionError) as raised:
        parse(text)
    assert raised.value.path == path


FACTS = ProfileFacts(traits={"country": "DE", "tags": ["a", "b"], "age": 40, "vip": True},
                     computed={"orders_30d": 3}, stage="customer", consent={"email": True, "sms": False},
                     segments=frozenset({"vip"}))


@pytest.mark.parametrize("text, expected", [
    ('traits.country = "DE"', True), ('traits.country != "DE"', False), ("traits.age > 39", True),
    ("traits.age <= 39", False), ('traits.tags contains "b"', True), ('traits.country contains "E"', True),
    ("traits.missing exists", False), ("traits.age exists", True), ("orders_30d >= 3", True),
    ('traits.age > "3"', False), ("traits.vip = 1", False), ("traits.vip = true", True),
    ('stage = "customer"', True), ("consent.email", True), ("consent.sms", False), ("consent.push", False),
    ('in_segment("vip")', True), ('not in_segment("vip") or traits.age < 18', False)])
def test_evaluation(text, expected):
    assert evaluate(parse(text), FACTS) is expected


def test_an_event_condition_reads_the_computed_trait_that_counts_it():
    condition = parse('did "Order Completed" at least 2 times within 30d where {coupon = "X"}')
    trait = event_trait(condition)
    assert trait == {"name": trait["name"], "function": "count", "event": "Order Completed",
                     "where": {"coupon": "X"}, "window": "30d"}
    assert reads(condition) == {f"computed.{trait['name']}"}
    assert evaluate(condition, ProfileFacts(computed={trait["name"]: 2}))
    assert not evaluate(condition, ProfileFacts(computed={trait["name"]: 1}))
    assert event_trait(parse('did "Order Completed" at least 5 times within 30d where {coupon = "X"}')) == trait


def test_reads_name_every_fact_a_condition_depends_on():
    condition = parse('orders_30d >= 2 and (traits.country = "DE" or stage = "lead") and consent.email '
                      'and not in_segment("vip")')
    assert reads(condition) == {"computed.orders_30d", "traits.country", "stage", "consent.email", "segment.vip"}


def test_segment_references_must_exist_and_never_loop():
    others = {"a": parse('in_segment("b")'), "b": parse("traits.x exists")}
    check_references("c", parse('in_segment("a")'), others)
    with pytest.raises(ConditionError, match="no such segment"):
        check_references("c", parse('in_segment("nope")'), others)
    with pytest.raises(ConditionError, match="b -> a -> b"):
        check_references("b", parse('in_segment("a")'), others)
