"""Covering indexes over the per-ticket metric contributions: the rankings (sums per scope and key) and the board's
grids and daily trend read the counters from the index alone, in key order, instead of visiting every wide row. Tickets by their last event's time: the city as of a time folds only the tickets
with events after it and sums the others' stored rows.

At 100,000 tickets the rankings by unit were the board page's slowest request (about a second): the GROUP BY walked
(scope, key) in the old index and then fetched each row for its twelve counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COUNTERS = ['tasks', 'response_n', 'responded', 'returned', 'completed', 'on_time', 'handled', 'rehandled',
            'callbacks', 'resolved', 'rated', 'satisfied']


def upgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.create_index('ix_proj_tickets_last_event', ['last_event_at', 'ticket_id'], unique=False)
    with op.batch_alter_table('proj_ticket_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_proj_ticket_metrics_sums', ['scope', 'key', *COUNTERS], unique=False)
        batch_op.create_index('ix_proj_ticket_metrics_by_ticket', ['ticket_id', 'scope', *COUNTERS], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proj_ticket_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_ticket_metrics_by_ticket')
        batch_op.drop_index('ix_proj_ticket_metrics_sums')
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tickets_last_event')
