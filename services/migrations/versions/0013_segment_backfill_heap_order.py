"""segments: membership history keyed by (segment_key, seq), one index instead of two; the
backfill's cursor in heap order (PostgreSQL reads segment_profiles block by block)

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        for name in ('backfill_tid', 'backfill_since', 'backfill_heap'):
            batch.add_column(sa.Column(name, sa.BigInteger(), server_default='0', nullable=False))
        batch.add_column(sa.Column('backfill_check_all', sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table('segment_membership_changes') as batch:
        batch.drop_index(batch.f('ix_segment_membership_changes_segment_key'))
        batch.drop_constraint(batch.f('pk_segment_membership_changes'), type_='primary')
        batch.create_primary_key(batch.f('pk_segment_membership_changes'), ['segment_key', 'seq'])


def downgrade() -> None:
    with op.batch_alter_table('segment_membership_changes') as batch:
        batch.drop_constraint(batch.f('pk_segment_membership_changes'), type_='primary')
        batch.create_primary_key(batch.f('pk_segment_membership_changes'), ['seq'])
        batch.create_index(batch.f('ix_segment_membership_changes_segment_key'), ['segment_key'], unique=False)
    with op.batch_alter_table('segments') as batch:
        for name in ('backfill_check_all', 'backfill_heap', 'backfill_since', 'backfill_tid'):
            batch.drop_column(name)
