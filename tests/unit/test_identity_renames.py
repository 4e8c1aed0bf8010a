"""A batch's component renames, collapsed (`final_components`) into one update a table: rows
end where running the renames one by one, in the order made, puts them."""
from hypothesis import given, strategies as st

from services.identity.batch import final_components

components = st.sampled_from("abcdef")


@given(st.lists(st.tuples(components, components), max_size=12), st.lists(components, max_size=20))
def test_rows_end_where_the_renames_run_one_by_one_put_them(renames, rows):
    one_by_one = list(rows)
    for held, into in renames:
        one_by_one = [into if c == held else c for c in one_by_one]
    moves = final_components([{"held": h, "into": i} for h, i in renames])
    assert [moves.get(c, c) for c in rows] == one_by_one
