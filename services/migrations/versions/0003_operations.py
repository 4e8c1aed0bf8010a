"""operations: parked_events (poison records set aside by the projector loop)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import services.runtime.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('parked_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('consumer', sa.String(length=200), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=True),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('timestamp_ms', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('parked_at', services.runtime.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', services.runtime.db.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parked_events')),
    sa.UniqueConstraint('consumer', 'topic', 'partition', 'offset',
                        name=op.f('uq_parked_events_consumer'))
    )
    with op.batch_alter_table('parked_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parked_events_consumer'), ['consumer'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('parked_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_parked_events_consumer'))
    op.drop_table('parked_events')
