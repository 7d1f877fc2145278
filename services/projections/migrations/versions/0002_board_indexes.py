"""Indexes for the supervisors' board: the alerts feed (timeline by kind, newest first), and covering indexes for
counting tickets per state and per grid (open, overdue) and for the daily trend's join (a ticket's submission time),
so none of the board's counts reads the wide ticket rows.

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
        batch_op.create_index('ix_proj_tickets_grid', ['grid', 'status', 'overdue'], unique=False)
        batch_op.create_index('ix_proj_tickets_status_overdue', ['status', 'overdue'], unique=False)
        batch_op.create_index('ix_proj_tickets_submitted', ['submitted_at', 'ticket_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tickets_submitted')
        batch_op.drop_index('ix_proj_tickets_status_overdue')
        batch_op.drop_index('ix_proj_tickets_grid')
    with op.batch_alter_table('proj_timeline', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_timeline_kind_time')
