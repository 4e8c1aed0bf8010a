"""profile identities by profile: the 360 view reads a profile's identities by its id

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_profile_identities_profile_id'), 'profile_identities', ['profile_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_profile_identities_profile_id'), table_name='profile_identities')
