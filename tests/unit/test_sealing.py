"""Sealing under several subjects' keys: readable with all of them, with any one destroyed
(or a byte changed) not at all."""
import os

from hypothesis import given, strategies as st

from services.runtime.sealing import is_sealed, kids_of, seal, unseal

KIDS = st.lists(st.text("abcdef0123456789", min_size=8, max_size=8), min_size=1, max_size=4, unique=True)


@given(st.binary(max_size=2_000), KIDS, st.data())
def test_opens_with_every_key_and_not_without_one(plaintext, kids, data):
    keys = {kid: os.urandom(32) for kid in kids}
    sealed = seal(plaintext, kids, keys)
    assert is_sealed(sealed) and kids_of(sealed) == sorted(kids)
    assert unseal(sealed, keys) == plaintext
    destroyed = data.draw(st.sampled_from(kids))
    assert unseal(sealed, {**keys, destroyed: None}) is None
    assert unseal(sealed, {k: v for k, v in keys.items() if k != destroyed}) is None


@given(st.binary(min_size=1, max_size=500), KIDS, st.data())
def test_a_changed_key_or_byte_does_not_open(plaintext, kids, data):
    keys = {kid: os.urandom(32) for kid in kids}
    sealed = seal(plaintext, kids, keys)
    other = data.draw(st.sampled_from(kids))
    assert unseal(sealed, {**keys, other: os.urandom(32)}) is None
    header, _, data_part = sealed.rpartition(b'"data":"')
    flipped = header + b'"data":"' + (b"B" if data_part[:1] == b"A" else b"A") + data_part[1:]
    assert unseal(flipped, keys) is None


def test_clear_values_pass_through():
    assert unseal(b'{"messageId":"m1"}', {}) == b'{"messageId":"m1"}'
    assert kids_of(b'{"messageId":"m1"}') == []
