"""Tables of the shared runtime."""
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base


class ConsumerOffset(Base):
    """Where a projector is in each partition: the next offset to apply.

    Written in the same transaction as the projection it describes (invariant 2).
    """

    __tablename__ = "consumer_offsets"
    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
