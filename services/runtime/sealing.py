"""Crypto-shredding: personal data on the log is sealed with keys that erasure destroys.

The log is append-only (Kafka can't delete one person's records), so a person's data on it
is made unreadable instead. Every key belongs to a *subject*: an identifier ("email:a@b.c")
or a profile ("profile:<id>"). Subjects are named on the log by a kid, an HMAC of the
subject under a secret kept beside the keys, so a record says whose keys open it without
saying who that is.

- events.raw (and events.rejected) are sealed by ingest under the keys of every
  identifier the event carries; the data key needs ALL of them, so destroying any one of the
  person's identifiers' keys makes every event that names them unreadable.
- events.resolved and profiles.changed, keyed by profile id, are sealed under that
  profile's key when they are appended (SealingLog), whoever appends them.
- segments.membership carries profile ids and segment keys only, and stays clear so that
  marketing tools can read it.

Keys are created and committed (in their own transaction, on their own connection: on
SQLite a file of their own) before anything sealed under them is appended, so a consumer
never sees a record whose key isn't stored yet. A consumer checks its keys for every
batch, after it has locked its offsets: an erasure, which holds those locks, can't
interleave with it. A key never changes but to be destroyed, and every destruction counts
one more erasure in the keys' own database, so a key read before still opens while that
count stands: a batch reads the count and only the keys it has not read yet. A record whose
key is destroyed (or whose data fails to authenticate) is skipped: the person it was about
is gone.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from binascii import a2b_base64, b2a_base64
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import BigInteger, LargeBinary, String, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime import jsoncodec, topics
from services.runtime.clock import now
from services.runtime.db import (Base, UtcDateTime, each_in, in_chunks, insert_new, insert_new_rows, make_engine,
                                 reading, writing)
from services.runtime.log import Consumer, Log, Message, OnAssign, Record, TopicPartition

SEALED = b'{"sealed":'  # how a sealed value starts; anything else is clear JSON
PROFILE_SEALED_TOPICS = frozenset({topics.EVENTS_RESOLVED, topics.PROFILES_CHANGED})
CACHE_SIZE = 100_000
CACHE_TTL_S = 60.0  # sealing with a key destroyed meanwhile is harmless: nobody can open it
KIDS_A_STATEMENT = 1_000  # kids read or written by one statement (keys are small rows)


class SubjectKey(Base):
    """A subject's data key; `key` is None once erasure destroyed it (the row stays, so the
    kid is never given a new key: new events naming an erased identifier can't be sealed)."""

    __tablename__ = "subject_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SealErasures(Base):
    """How many times keys were destroyed (one row): a key read while the count was the same
    is still the stored one."""

    __tablename__ = "seal_erasures"
    id: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class SealSecret(Base):
    """The HMAC secret that turns a subject into its kid (one row, made on first use)."""

    __tablename__ = "seal_secret"
    id: Mapped[int] = mapped_column(primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)


def identifier_subject(type_: str, value: str) -> str:
    return f"{type_}:{value}"


def profile_subject(profile_id: str) -> str:
    return f"profile:{profile_id}"


class KeyStore:
    """Subject keys, in the main database (PostgreSQL) or a file of their own (SQLite)."""

    def __init__(self, engine: Engine, *, own_database: bool = False):
        self.engine = engine
        self._secret: bytes | None = None
        self._kids: dict[str, str] = {}
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._opened: dict[str, bytes] = {}  # keys read to open records, good while the count stands
        self._opened_count: int | None = None
        self._lock = threading.Lock()
        if own_database:  # a file of its own, outside the migrations (which make them in the main one)
            Base.metadata.create_all(engine, tables=[SealSecret.__table__, SubjectKey.__table__,
                                                     SealErasures.__table__])

    @classmethod
    def for_settings(cls, settings) -> "KeyStore":
        """On SQLite the keys get a file of their own (keys.db beside rapport.db), so they can
        be written while a projector holds rapport.db's write lock; else the main database."""
        if settings.database_url.startswith("sqlite"):
            return cls(make_engine(f"sqlite:///{settings.data_dir / 'keys.db'}", durable=True),
                       own_database=True)
        return cls(make_engine(settings.database_url))

    def kid(self, subject: str) -> str:
        kid = self._kids.get(subject)
        if kid is None:  # an HMAC costs ~10 us, and the same people keep coming back
            kid = hmac.new(self.secret(), subject.encode(), hashlib.sha256).hexdigest()[:40]
            if len(self._kids) >= CACHE_SIZE:
                self._kids.clear()
            self._kids[subject] = kid
        return kid

    def secret(self) -> bytes:
        if self._secret is None:
            with writing(self.engine) as session:
                insert_new(session, SealSecret, {"id": 1, "secret": os.urandom(32)}, ["id"])
                self._secret = session.get(SealSecret, 1).secret
        return self._secret

    def sealing_keys(self, kids: Iterable[str]) -> dict[str, bytes | None]:
        """The key of each kid, made now when it has none; None for a destroyed key."""
        wanted, found = set(kids), {}
        with self._lock:
            for kid in wanted:
                cached = self._cache.get(kid)
                if cached is not None and cached[1] > time.monotonic():
                    found[kid] = cached[0]
        missing = wanted - found.keys()
        if missing:
            at = now()
            with writing(self.engine) as session:
                for kids in in_chunks(missing, KIDS_A_STATEMENT):
                    insert_new_rows(session, SubjectKey, [{"kid": kid, "key": AESGCM.generate_key(256),
                                                           "created_at": at} for kid in kids], ["kid"])
            stored = self._stored(missing)
            found |= stored
            self._remember({k: v for k, v in stored.items() if v is not None})
        return found

    def opening_keys(self, kids: Iterable[str]) -> dict[str, bytes | None]:
        """The stored key of each kid as of now (erasure must win at once): the erasure count
        first, then only the keys not read since it last changed. Read in that order, a key
        destroyed after the count was read is either read destroyed or found out by the next
        batch's count."""
        wanted = set(kids)
        with reading(self.engine) as session:
            count = session.scalar(select(SealErasures.count).where(SealErasures.id == 1)) or 0
            with self._lock:
                if count != self._opened_count:
                    self._opened, self._opened_count = {}, count
                found: dict[str, bytes | None] = {kid: self._opened[kid] for kid in wanted if kid in self._opened}
            if len(found) < len(wanted):
                stored = self._read(session, wanted - found.keys())
                found |= stored
                self._keep_opened(count, stored)
        return found

    def _keep_opened(self, count: int, stored: dict[str, bytes | None]) -> None:
        with self._lock:
            if count != self._opened_count:  # another thread saw a newer count meanwhile
                return
            if len(self._opened) + len(stored) > CACHE_SIZE:
                self._opened = {}
            self._opened.update((kid, key) for kid, key in stored.items() if key is not None)

    def destroy(self, kids: Iterable[str]) -> int:
        """Destroy these kids' keys (tombstones for kids never keyed); answers how many."""
        kids, at = sorted(set(kids)), now()
        with writing(self.engine) as session:
            for chunk in in_chunks(kids, KIDS_A_STATEMENT):
                insert_new_rows(session, SubjectKey, [{"kid": kid, "key": None, "created_at": at, "destroyed_at": at}
                                                      for kid in chunk], ["kid"])
            session.execute(update(SubjectKey).where(SubjectKey.kid.in_(kids), SubjectKey.key.is_not(None))
                            .values(key=None, destroyed_at=at))
            insert_new(session, SealErasures, {"id": 1, "count": 0}, ["id"])
            session.execute(update(SealErasures).where(SealErasures.id == 1).values(count=SealErasures.count + 1))
        with self._lock:
            for kid in kids:
                self._cache.pop(kid, None)
            self._opened, self._opened_count = {}, None
        return len(kids)

    def _stored(self, kids: set[str]) -> dict[str, bytes | None]:
        with reading(self.engine) as session:
            return self._read(session, kids)

    @staticmethod
    def _read(session, kids: set[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for condition in each_in(session, SubjectKey.kid, kids):  # one array parameter
            found.update({kid: key for kid, key in session.execute(select(SubjectKey.kid, SubjectKey.key)
                                                                   .where(condition))})
        return found

    def _remember(self, keys: dict[str, bytes]) -> None:
        expires = time.monotonic() + CACHE_TTL_S
        with self._lock:
            for kid, key in keys.items():
                self._cache[kid] = (key, expires)
                self._cache.move_to_end(kid)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)


# --- sealing and opening values (pure) ---------------------------------------------------

def data_key(keys: Sequence[bytes]) -> bytes:
    """One AES key from all the subjects' keys: without any one of them it can't be made."""
    if len(keys) == 1:
        return keys[0]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"rapport-seal-v1").derive(b"".join(keys))


def seal(plaintext: bytes, kids: Sequence[str], keys: dict[str, bytes]) -> bytes:
    """`plaintext` sealed under the keys of `kids` (sorted, as the header lists them)."""
    kids = sorted(set(kids)) if len(kids) > 1 else kids
    nonce = os.urandom(12)
    sealed = _cipher(data_key([keys[k] for k in kids])).encrypt(nonce, plaintext, ",".join(kids).encode())
    # kids are hex and base64 needs no escaping: the JSON is written directly (ingest seals every event)
    return (b'{"sealed":1,"kids":["' + '","'.join(kids).encode() + b'"],"nonce":"' + b2a_base64(nonce, newline=False)
            + b'","data":"' + b2a_base64(sealed, newline=False) + b'"}')


_ciphers: dict[bytes, AESGCM] = {}


def _cipher(key: bytes) -> AESGCM:
    """An AESGCM per key, kept (making one costs as much as sealing a small event)."""
    cipher = _ciphers.get(key)
    if cipher is None:
        if len(_ciphers) >= CACHE_SIZE:
            _ciphers.clear()
        cipher = _ciphers[key] = AESGCM(key)
    return cipher


def is_sealed(value: bytes) -> bool:
    return value.startswith(SEALED)


def _header(value: bytes) -> dict:
    """A sealed value's JSON, which `seal` writes with no number but "sealed":1, so orjson
    reads it exactly (jsoncodec's check for long integers scanned the whole value again)."""
    return orjson.loads(value)


def kids_of(value: bytes) -> list[str]:
    return _header(value)["kids"] if is_sealed(value) else []


def unseal(value: bytes, keys: dict[str, bytes | None]) -> bytes | None:
    """The plaintext of a sealed value, or None when a key is destroyed or the data is forged."""
    return _opened(value, _header(value) if is_sealed(value) else None, keys)


def _opened(value: bytes, header: dict | None, keys: dict[str, bytes | None]) -> bytes | None:
    """`unseal` with the value's header already parsed (None: a clear value)."""
    if header is None:
        return value
    if any(keys.get(kid) is None for kid in header["kids"]):
        return None
    try:
        return _cipher(data_key([keys[k] for k in header["kids"]])).decrypt(
            a2b_base64(header["nonce"]), a2b_base64(header["data"]),
            ",".join(header["kids"]).encode())
    except Exception:  # noqa: BLE001 - InvalidTag: sealed under a key that is not this one
        return None


# --- the edges: records in, messages out ------------------------------------------------

def open_values(keystore: KeyStore, values: Sequence[bytes]) -> list[bytes | None]:
    """Each value opened (clear ones as they are), None where it can't be: one read of the
    keys for them all, each header parsed once."""
    headers = [_header(v) if is_sealed(v) else None for v in values]
    kids = {kid for header in headers if header is not None for kid in header["kids"]}
    keys = keystore.opening_keys(kids) if kids else {}
    return [_opened(value, header, keys) for value, header in zip(values, headers)]


def open_records(keystore: KeyStore, records: Sequence[Record]) -> tuple[list[Record], int]:
    """The records with their values opened, and how many could not be (erased people's)."""
    opened = [record if value is record.value else Record(record.topic, record.partition, record.offset,
                                                          record.key, value, record.timestamp_ms)
              for record, value in zip(records, open_values(keystore, [r.value for r in records]))
              if value is not None]
    return opened, len(records) - len(opened)


def read_json(log, records: Sequence[Record]) -> list:
    """The JSON of the records a reader of `log` (a SealingLog) can open, in order."""
    keystore = getattr(log, "keystore", None)
    opened = open_records(keystore, records)[0] if keystore is not None else records
    return [jsoncodec.loads(r.value) for r in opened]


def seal_messages(keystore: KeyStore, items: Sequence[tuple[list[str], Message]]) -> list[Message | None]:
    """Each message sealed under its subjects (clear when it names none); None when one of
    its subjects is erased, so the message must not be appended."""
    kids_per = [[keystore.kid(s) for s in subjects] for subjects, _ in items]
    keys = keystore.sealing_keys({k for kids in kids_per for k in kids})
    sealed: list[Message | None] = []
    for kids, (_, message) in zip(kids_per, items):
        if not kids:
            sealed.append(message)
        elif any(keys.get(k) is None for k in kids):
            sealed.append(None)
        else:
            sealed.append(Message(message.key, seal(message.value, kids, keys)))
    return sealed


class SealingLog:
    """A log that seals what is appended to the profile-keyed topics under the profile's key."""

    def __init__(self, log: Log, keystore: KeyStore):
        self.inner, self.keystore = log, keystore

    def append(self, topic: str, messages: Sequence[Message]) -> None:
        if topic in PROFILE_SEALED_TOPICS:
            items = [([profile_subject(m.key)] if m.key and not is_sealed(m.value) else [], m)
                     for m in messages]
            # a profile's key destroyed: the profile is erased, and what names it is dropped
            messages = [m for m in seal_messages(self.keystore, items) if m is not None]
        self.inner.append(topic, messages)

    def ensure_topics(self, names: Sequence[str]) -> None:
        self.inner.ensure_topics(names)

    def consumer(self, group: str, names: Sequence[str], on_assign: OnAssign) -> Consumer:
        return self.inner.consumer(group, names, on_assign)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self.inner.end_offsets(partitions)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):  # backend extras (the embedded log's retention, ...)
        return getattr(self.inner, name)
