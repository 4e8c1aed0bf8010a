"""identity: shared identifiers, and when each identifier was first seen (limits per window)

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('identity_links') as batch:
        batch.add_column(sa.Column('shared', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('first_at', sa.String(length=40), nullable=True))
    # the event that created the link; a recomputation of the component corrects it if an
    # earlier one arrived later
    op.execute("UPDATE identity_links SET first_at = (SELECT e.at FROM identity_events e "
               "WHERE e.message_id = identity_links.first_message_id)")


def downgrade() -> None:
    with op.batch_alter_table('identity_links') as batch:
        batch.drop_column('first_at')
        batch.drop_column('shared')
