"""erasure: subject keys (crypto-shredding), deletion requests, suppressed identifiers

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
from services.runtime.db import Json, UtcDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'subject_keys',
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('key', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('destroyed_at', UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('kid', name=op.f('pk_subject_keys')))
    op.create_table(
        'seal_secret',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_seal_secret')))
    op.create_table(
        'deletion_requests',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('identifier_type', sa.String(length=64), nullable=False),
        sa.Column('identifier_kid', sa.String(length=64), nullable=False),
        sa.Column('profile_id', sa.String(length=64), nullable=True),
        sa.Column('mode', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('requested_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('done_at', UtcDateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('outcome', Json(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deletion_requests')))
    op.create_index(op.f('ix_deletion_requests_status'), 'deletion_requests', ['status'], unique=False)
    op.create_table(
        'suppressed_identifiers',
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('identifier_type', sa.String(length=64), nullable=False),
        sa.Column('request_id', sa.String(length=64), nullable=False),
        sa.Column('suppressed_at', UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('kid', name=op.f('pk_suppressed_identifiers')))


def downgrade() -> None:
    op.drop_table('suppressed_identifiers')
    op.drop_index(op.f('ix_deletion_requests_status'), table_name='deletion_requests')
    op.drop_table('deletion_requests')
    op.drop_table('seal_secret')
    op.drop_table('subject_keys')
