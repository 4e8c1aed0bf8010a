"""identity: components, evidence (identity_events), refusals, splits, operator overrides

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import services.runtime.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

Json, UtcDateTime = services.runtime.db.Json, services.runtime.db.UtcDateTime


def upgrade() -> None:
    op.create_table('identity_components',
                    sa.Column('component', sa.String(length=64), nullable=False),
                    sa.Column('last_key', sa.String(length=300), nullable=False),
                    sa.Column('merged_into', sa.String(length=64), nullable=True),
                    sa.PrimaryKeyConstraint('component', name=op.f('pk_identity_components')))
    op.create_table('identity_events',
                    sa.Column('message_id', sa.String(length=200), nullable=False),
                    sa.Column('component', sa.String(length=64), nullable=False),
                    sa.Column('profile_id', sa.String(length=64), nullable=False),
                    sa.Column('at', sa.String(length=40), nullable=False),
                    sa.Column('identifiers', Json(), nullable=False),
                    sa.Column('topic', sa.String(length=200), nullable=False),
                    sa.Column('partition', sa.Integer(), nullable=False),
                    sa.Column('offset', sa.BigInteger(), nullable=False),
                    sa.Column('version', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_identity_events')))
    with op.batch_alter_table('identity_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_events_component'), ['component'], unique=False)
        batch_op.create_index(batch_op.f('ix_identity_events_profile_id'), ['profile_id'], unique=False)
    op.create_table('identity_overrides',
                    sa.Column('type', sa.String(length=64), nullable=False),
                    sa.Column('value', sa.String(length=512), nullable=False),
                    sa.Column('action', sa.String(length=16), nullable=False),
                    sa.Column('profile_id', sa.String(length=64), nullable=False),
                    sa.Column('reason', sa.String(length=2000), nullable=False),
                    sa.Column('created_at', UtcDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('type', 'value', name=op.f('pk_identity_overrides')))
    op.create_table('identity_refusals',
                    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column('message_id', sa.String(length=200), nullable=False),
                    sa.Column('profile_id', sa.String(length=64), nullable=False),
                    sa.Column('dropped_type', sa.String(length=64), nullable=False),
                    sa.Column('dropped_value', sa.String(length=512), nullable=False),
                    sa.Column('conflict_type', sa.String(length=64), nullable=False),
                    sa.Column('reason', sa.String(length=2000), nullable=False),
                    sa.Column('refused_at', UtcDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_refusals')),
                    sa.UniqueConstraint('message_id', 'dropped_type', 'dropped_value',
                                        name=op.f('uq_identity_refusals_message_id')))
    with op.batch_alter_table('identity_refusals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_refusals_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identity_refusals_profile_id'), ['profile_id'], unique=False)
    op.create_table('identity_splits',
                    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
                    sa.Column('profile_id', sa.String(length=64), nullable=False),
                    sa.Column('parts', Json(), nullable=False),
                    sa.Column('removed', Json(), nullable=False),
                    sa.Column('cause', sa.String(length=300), nullable=False),
                    sa.Column('split_at', UtcDateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_splits')))
    with op.batch_alter_table('identity_splits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_splits_profile_id'), ['profile_id'], unique=False)

    # Links made before 0004 have no evidence: each profile becomes a component of its own
    # (replaying events.raw into empty identity tables rebuilds them with evidence).
    with op.batch_alter_table('identity_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('component', sa.String(length=64), nullable=True))
    op.execute("UPDATE identity_links SET component = profile_id")
    op.execute("INSERT INTO identity_components (component, last_key) "
               "SELECT DISTINCT component, '' FROM identity_links")
    with op.batch_alter_table('identity_links', schema=None) as batch_op:
        batch_op.alter_column('component', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_identity_links_component'), ['component'], unique=False)
    with op.batch_alter_table('identity_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('named_type', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('named_value', sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('identity_profiles', schema=None) as batch_op:
        batch_op.drop_column('named_value')
        batch_op.drop_column('named_type')
    with op.batch_alter_table('identity_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_links_component'))
        batch_op.drop_column('component')
    for table in ('identity_splits', 'identity_refusals', 'identity_overrides', 'identity_events',
                  'identity_components'):
        op.drop_table(table)
