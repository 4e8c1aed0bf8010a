"""identity: corrections numbered (merges and splits carry `seq`); profile: the newest
correction applied to each id, so a late copy of an older one is not applied over it

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

from services.runtime.db import UtcDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'identity_corrections',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('made_at', UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_corrections')))
    op.create_table(
        'profile_alias_corrections',
        sa.Column('profile_id', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('profile_id', name=op.f('pk_profile_alias_corrections')))


def downgrade() -> None:
    op.drop_table('profile_alias_corrections')
    op.drop_table('identity_corrections')
