"""profile: running aggregates of the timeline (`profiles.summary`), so a batch folds in its
new events instead of reading each changed profile's whole timeline; NULL folds it again

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa

from services.runtime.db import Json

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('profiles') as batch:
        batch.add_column(sa.Column('summary', Json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('profiles') as batch:
        batch.drop_column('summary')
