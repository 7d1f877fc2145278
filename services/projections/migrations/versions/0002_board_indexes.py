"""Indexes for the supervisors' board: the alerts feed (timeline by kind, newest first) and tickets per grid.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('proj_timeline', schema=None) as batch_op:
        batch_op.create_index('ix_proj_timeline_kind_time', ['kind', 'time'], unique=False)
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.create_index('ix_proj_tickets_grid', ['grid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tickets_grid')
    with op.batch_alter_table('proj_timeline', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_timeline_kind_time')
