"""profile 360: computed traits, CRM metrics, identities, channels

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import services.runtime.db
from services.runtime.db import Json, UtcDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('profiles') as batch:
        batch.add_column(sa.Column('computed', Json(), server_default=sa.text("'{}'"), nullable=False))
        batch.add_column(sa.Column('due_at', UtcDateTime(timezone=True), nullable=True))
        batch.create_index(batch.f('ix_profiles_due_at'), ['due_at'], unique=False)
    with op.batch_alter_table('profile_events') as batch:
        batch.add_column(sa.Column('source', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('channel', sa.String(length=32), nullable=True))
    op.create_table(
        'profile_identities',
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=512), nullable=False),
        sa.Column('profile_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('type', 'value', 'profile_id', name=op.f('pk_profile_identities')))
    op.create_table(
        'computed_trait_definitions',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('definition', Json(), nullable=False),
        sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_computed_trait_definitions')))
    op.create_table(
        'rfm_cuts',
        sa.Column('dimension', sa.String(length=16), nullable=False),
        sa.Column('cuts', Json(), nullable=False),
        sa.Column('computed_at', UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('dimension', name=op.f('pk_rfm_cuts')))


def downgrade() -> None:
    op.drop_table('rfm_cuts')
    op.drop_table('computed_trait_definitions')
    op.drop_table('profile_identities')
    with op.batch_alter_table('profile_events') as batch:
        batch.drop_column('channel')
        batch.drop_column('source')
    with op.batch_alter_table('profiles') as batch:
        batch.drop_index(batch.f('ix_profiles_due_at'))
        batch.drop_column('due_at')
        batch.drop_column('computed')
