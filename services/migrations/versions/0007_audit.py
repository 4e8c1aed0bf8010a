"""audit log of admin and privacy actions

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
from services.runtime.db import Json, UtcDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=300), nullable=False),
        sa.Column('action', sa.String(length=500), nullable=False),
        sa.Column('details', Json(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')))
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_audit_log_at'), table_name='audit_log')
    op.drop_table('audit_log')
