"""volumes: depth, z spacing, source metadata

Revision ID: de4d9e9fec4d
Revises: 289d38e5f518
Create Date: 2026-11-21 21:31:40.615829
"""

from alembic import op
import sqlalchemy as sa


revision = 'de4d9e9fec4d'
down_revision = '289d38e5f518'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('depth', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('z_spacing', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('source_metadata', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))



def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('source_metadata')
        batch_op.drop_column('z_spacing')
        batch_op.drop_column('depth')

