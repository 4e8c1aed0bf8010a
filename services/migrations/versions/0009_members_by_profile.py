"""segment members by profile: reevaluation reads a profile's memberships

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_segment_members_profile_id'), 'segment_members', ['profile_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_segment_members_profile_id'), table_name='segment_members')
