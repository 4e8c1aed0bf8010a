"""segments: text form, consent, backfill progress, facts, ordered sequence; profile consent; lifecycle

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
from services.runtime.db import Json, UtcDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        batch.add_column(sa.Column('text', sa.String(length=4000), nullable=True))
        batch.add_column(sa.Column('requires_consent', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('updated_at', UtcDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('backfill_state', sa.String(length=16), server_default='done', nullable=False))
        batch.add_column(sa.Column('backfill_done', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('backfill_total', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('backfill_after', sa.String(length=64), server_default='', nullable=False))
    with op.batch_alter_table('segment_profiles') as batch:
        batch.add_column(sa.Column('computed', Json(), server_default=sa.text("'{}'"), nullable=False))
        batch.add_column(sa.Column('stage', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('consent', Json(), server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table('profile_events') as batch:
        batch.add_column(sa.Column('traits', Json(), server_default=sa.text("'{}'"), nullable=False))
        batch.add_column(sa.Column('consent', Json(), server_default=sa.text("'{}'"), nullable=False))
        batch.add_column(sa.Column('version', sa.BigInteger(), server_default='0', nullable=False))
        batch.create_index(batch.f('ix_profile_events_message_id'), ['message_id'], unique=False)
    op.create_table(
        'profile_consent',
        sa.Column('profile_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', Json(), nullable=True),
        sa.Column('at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('message_id', sa.String(length=200), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('profile_id', 'name', name=op.f('pk_profile_consent')))
    op.create_table(
        'lifecycle_stages',
        sa.Column('profile_id', sa.String(length=64), nullable=False),
        sa.Column('stage', sa.String(length=16), nullable=False),
        sa.Column('since', UtcDateTime(timezone=True), nullable=False),
        sa.Column('why', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('profile_id', name=op.f('pk_lifecycle_stages')))
    op.create_index(op.f('ix_lifecycle_stages_stage'), 'lifecycle_stages', ['stage'], unique=False)
    op.create_table(
        'lifecycle_transitions',
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('profile_id', sa.String(length=64), nullable=False),
        sa.Column('from_stage', sa.String(length=16), nullable=True),
        sa.Column('to_stage', sa.String(length=16), nullable=False),
        sa.Column('at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('why', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_lifecycle_transitions')))
    op.create_index(op.f('ix_lifecycle_transitions_profile_id'), 'lifecycle_transitions', ['profile_id'],
                    unique=False)
    op.create_table(
        'segment_sequence',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_segment_sequence')))


def downgrade() -> None:
    op.drop_table('segment_sequence')
    op.drop_table('profile_consent')
    with op.batch_alter_table('profile_events') as batch:
        batch.drop_index(batch.f('ix_profile_events_message_id'))
        for column in ('version', 'consent', 'traits'):
            batch.drop_column(column)
    op.drop_index(op.f('ix_lifecycle_transitions_profile_id'), table_name='lifecycle_transitions')
    op.drop_table('lifecycle_transitions')
    op.drop_index(op.f('ix_lifecycle_stages_stage'), table_name='lifecycle_stages')
    op.drop_table('lifecycle_stages')
    with op.batch_alter_table('segment_profiles') as batch:
        for column in ('consent', 'stage', 'computed'):
            batch.drop_column(column)
    with op.batch_alter_table('segments') as batch:
        for column in ('backfill_after', 'backfill_total', 'backfill_done', 'backfill_state', 'updated_at',
                       'requires_consent', 'text'):
            batch.drop_column(column)
