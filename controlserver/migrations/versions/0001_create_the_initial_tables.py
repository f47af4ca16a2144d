"""Create the initial tables

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrollment_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('frontends',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('region', sa.String(length=128), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('api_endpoint', sa.String(length=512), nullable=False),
    sa.Column('share_domain', sa.String(length=255), nullable=False),
    sa.Column('health_url', sa.String(length=512), nullable=False),
    sa.Column('in_inventory', sa.Boolean(), nullable=False),
    sa.Column('healthy', sa.Boolean(), nullable=False),
    sa.Column('draining', sa.Boolean(), nullable=False),
    sa.Column('assigned', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('consecutive_successes', sa.Integer(), nullable=False),
    sa.Column('last_probe_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_probe_error', sa.Text(), nullable=True),
    sa.Column('health_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('printers',
    sa.Column('id', sa.String(length=63), nullable=False),
    sa.Column('hardware_id', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('frontend', sa.String(length=128), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('region', sa.String(length=128), nullable=True),
    sa.Column('agent_version', sa.String(length=64), nullable=True),
    sa.Column('moonraker_version', sa.String(length=64), nullable=True),
    sa.Column('moonraker_api_key', sa.String(length=128), nullable=True),
    sa.Column('share_password', sa.String(length=64), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('move_reason', sa.String(length=64), nullable=True),
    sa.Column('last_heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reported_frontend', sa.String(length=128), nullable=True),
    sa.Column('share_state', sa.String(length=16), nullable=True),
    sa.Column('share_token', sa.String(length=128), nullable=True),
    sa.Column('moonraker_state', sa.String(length=16), nullable=True),
    sa.Column('klippy_state', sa.String(length=32), nullable=True),
    sa.Column('latency_ms', sa.JSON(), nullable=True),
    sa.Column('probe_failures', sa.Integer(), nullable=False),
    sa.Column('last_probe_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_probe_error', sa.Text(), nullable=True),
    sa.Column('restart_share', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['frontend'], ['frontends.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('printers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_printers_frontend'), ['frontend'], unique=False)

    op.create_table('zrok_accounts',
    sa.Column('printer_id', sa.String(length=63), nullable=False),
    sa.Column('frontend', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('account_token', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['printer_id'], ['printers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('printer_id', 'frontend')
    )


def downgrade() -> None:
    op.drop_table('zrok_accounts')
    with op.batch_alter_table('printers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_printers_frontend'))

    op.drop_table('printers')
    op.drop_table('leases')
    op.drop_table('frontends')
    op.drop_table('enrollment_tokens')
