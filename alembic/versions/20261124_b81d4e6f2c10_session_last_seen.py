"""login sessions remember when they were last used, so idle ones end and users see where they are active

Revision ID: b81d4e6f2c10
Revises: 5e1f0c2d9a47
Create Date: 2026-11-24 00:10:00
"""

import sqlalchemy as sa

from alembic import op

revision = 'b81d4e6f2c10'
down_revision = '5e1f0c2d9a47'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
