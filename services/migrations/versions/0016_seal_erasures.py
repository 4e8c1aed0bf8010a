"""sealing: a count of key destructions, so a consumer reuses the keys it read while no key
has been destroyed since (one read a batch instead of every key)

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'seal_erasures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_seal_erasures')))


def downgrade() -> None:
    op.drop_table('seal_erasures')
