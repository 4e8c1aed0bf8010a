"""identity rules stored by admins

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
from services.runtime.db import Json, UtcDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'identity_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('document', Json(), nullable=False),
        sa.Column('updated_at', UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_rules')))


def downgrade() -> None:
    op.drop_table('identity_rules')
