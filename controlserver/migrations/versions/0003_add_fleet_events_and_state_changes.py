"""Add the fleet event list and the frontends' state change time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fleet_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('frontend', sa.String(length=128), nullable=True),
    sa.Column('from_frontend', sa.String(length=128), nullable=True),
    sa.Column('printer_id', sa.String(length=63), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('count', sa.Integer(), nullable=True),
    sa.Column('detail', sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('frontends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=True))
    # The last health change is the best known state change of frontends that exist already;
    # drain changes before this migration were not recorded.
    op.execute("UPDATE frontends SET state_changed_at = health_changed_at")


def downgrade() -> None:
    with op.batch_alter_table('frontends', schema=None) as batch_op:
        batch_op.drop_column('state_changed_at')
    op.drop_table('fleet_events')
