"""Incremental membership (only segments reading what changed) equals full recomputation."""
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segments.domain.conditions import ProfileFacts, evaluate
from services.segments.domain.index import SegmentIndex, changed_facts, effective_condition, membership_changes
from services.segments.domain.text import parse

SEGMENTS = {
    "pro": parse('traits.plan = "pro"'),
    "big": parse("orders >= 3"),
    "pro_big": parse('in_segment("pro") and in_segment("big")'),
    "not_pro": parse('not in_segment("pro")'),
    "de_lead": parse('traits.country = "DE" and stage = "lead"'),
    "mailable": effective_condition(parse("orders >= 1"), "email"),
    "either": parse('in_segment("de_lead") or in_segment("mailable")'),
}
INDEX = SegmentIndex(SEGMENTS)

changes = st.lists(st.one_of(
    st.tuples(st.just("trait"), st.sampled_from(["plan", "country", "city"]), st.sampled_from(["pro", "free", "DE", "FR"])),
    st.tuples(st.just("computed"), st.just("orders"), st.integers(0, 5)),
    st.tuples(st.just("stage"), st.just("stage"), st.sampled_from(["visitor", "lead", "customer"])),
    st.tuples(st.just("consent"), st.just("email"), st.booleans())), max_size=30)


def full(facts: ProfileFacts) -> set[str]:
    members: set[str] = set()
    for key in INDEX.ordered:
        if evaluate(SEGMENTS[key], ProfileFacts(facts.traits, facts.computed, facts.stage, facts.consent,
                                                frozenset(members))):
            members.add(key)
    return members


@settings(max_examples=300, deadline=None, database=None)
@given(changes)
def test_incremental_membership_equals_a_full_recomputation(stream):
    traits, computed, consent, stage = {}, {}, {}, None
    members = full(ProfileFacts())  # a profile new to the projector is evaluated on every segment
    for kind, name, value in stream:
        if kind == "trait":
            traits[name] = value
        elif kind == "computed":
            computed[name] = value
        elif kind == "stage":
            stage = value
        else:
            consent[name] = value
        facts = changed_facts([name] if kind in ("trait", "computed") else [], kind == "stage",
                              {name} if kind == "consent" else set())
        for key, _entered in membership_changes(INDEX, INDEX.affected(facts),
                                                ProfileFacts(traits, computed, stage, consent), members):
            members ^= {key}
        assert members == full(ProfileFacts(traits, computed, stage, consent))


def test_a_change_touches_only_the_segments_that_read_it_and_their_dependents():
    assert INDEX.affected({"traits.city", "computed.city"}) == []
    assert INDEX.affected({"traits.plan"}) == [k for k in INDEX.ordered if k in {"pro", "pro_big", "not_pro"}]
    assert set(INDEX.affected({"consent.email"})) == {"mailable", "either"}
    assert INDEX.ordered.index("pro") < INDEX.ordered.index("pro_big")
