"""Which conditions compile to a set-based predicate (what they select is checked against
the Python evaluator on both databases in tests/segments/test_predicate_sql.py)."""
from services.segments.domain.predicate import AllOf, JsonTest, Negated, compile_condition
from services.segments.domain.text import parse


def test_a_name_sqlite_paths_cant_spell_leaves_the_whole_condition_to_python():
    assert compile_condition(parse('traits.plan = "pro"')) is not None
    for name in ("plän", 'say "hi"', "back\\slash", "tab\there"):
        leaf = {"trait": name, "op": "exists"}
        assert compile_condition(leaf) is None
        assert compile_condition({"or": [{"stage": "lead"}, {"not": leaf}]}) is None


def test_not_equal_needs_the_name_present():
    assert compile_condition(parse('traits.plan != "pro"')) == AllOf((
        JsonTest("traits", "plan", "present"), Negated(JsonTest("traits", "plan", "equals", "pro"))))
