"""Tables of the shared runtime."""
from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, UtcDateTime


class ConsumerOffset(Base):
    """Where a projector is in each partition: the next offset to apply.

    Written in the same transaction as the projection it describes (invariant 2).
    """

    __tablename__ = "consumer_offsets"
    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class ParkedEvent(Base):
    """A record its consumer's handler failed on, set aside so the consumer moves on.

    Parked in the transaction that moves the consumer's offset past it; `resolved_at`
    is set when a retry applies it (the row stays, as a record of what happened).
    """

    __tablename__ = "parked_events"
    __table_args__ = (UniqueConstraint("consumer", "topic", "partition", "offset"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(200), index=True)
    topic: Mapped[str] = mapped_column(String(200))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    parked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
