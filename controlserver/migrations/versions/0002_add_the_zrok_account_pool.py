"""Add the zrok account pool

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('zrok_account_pool',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('frontend', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('account_token', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('zrok_account_pool', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zrok_account_pool_frontend'), ['frontend'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('zrok_account_pool', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zrok_account_pool_frontend'))
    op.drop_table('zrok_account_pool')
