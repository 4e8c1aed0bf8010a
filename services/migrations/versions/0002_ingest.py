"""ingest: tracking plan mode and duplicate count per source, messageIds seen, plan violations

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import services.runtime.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_mode', sa.String(length=8), server_default='allow', nullable=False))
        batch_op.add_column(sa.Column('duplicates', sa.BigInteger(), server_default='0', nullable=False))

    op.create_table('ingest_seen_messages',
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('seen_at', services.runtime.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source_id', 'message_id', name=op.f('pk_ingest_seen_messages'))
    )
    with op.batch_alter_table('ingest_seen_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingest_seen_messages_seen_at'), ['seen_at'], unique=False)

    op.create_table('plan_violations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('event', sa.String(length=200), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('field', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('blocked', sa.Boolean(), nullable=False),
    sa.Column('at', services.runtime.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_violations'))
    )
    with op.batch_alter_table('plan_violations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_violations_source_id'), ['source_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('plan_violations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_violations_source_id'))
    op.drop_table('plan_violations')
    with op.batch_alter_table('ingest_seen_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingest_seen_messages_seen_at'))
    op.drop_table('ingest_seen_messages')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_column('duplicates')
        batch_op.drop_column('plan_mode')
