"""Projection tables: tickets, tasks (unit queues), timelines, metric contributions, rebuild bookkeeping.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('proj_meta',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('proj_rebuild_pending',
    sa.Column('ticket_id', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('ticket_id')
    )
    op.create_table('proj_rebuild_positions',
    sa.Column('topic', sa.String(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('topic', 'partition')
    )
    op.create_table('proj_tasks',
    sa.Column('task_id', sa.String(), nullable=False),
    sa.Column('ticket_id', sa.String(), nullable=False),
    sa.Column('unit', sa.String(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('category', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('open', sa.Boolean(), nullable=False),
    sa.Column('dispatch_id', sa.String(), nullable=True),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_for_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_progress_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('limits', sa.String(), nullable=True),
    sa.Column('sign_for_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('breached', sa.String(), nullable=False),
    sa.Column('reminders', sa.Integer(), nullable=False),
    sa.Column('returns', sa.Integer(), nullable=False),
    sa.Column('extensions_requested', sa.Integer(), nullable=False),
    sa.Column('extensions_granted', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('task_id')
    )
    with op.batch_alter_table('proj_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_proj_tasks_ticket_id', ['ticket_id'], unique=False)
        batch_op.create_index('ix_proj_tasks_unit_open', ['unit', 'open'], unique=False)

    op.create_table('proj_ticket_metrics',
    sa.Column('ticket_id', sa.String(), nullable=False),
    sa.Column('scope', sa.String(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('tasks', sa.Integer(), nullable=False),
    sa.Column('response_n', sa.Integer(), nullable=False),
    sa.Column('responded', sa.Integer(), nullable=False),
    sa.Column('returned', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=False),
    sa.Column('handled', sa.Integer(), nullable=False),
    sa.Column('rehandled', sa.Integer(), nullable=False),
    sa.Column('callbacks', sa.Integer(), nullable=False),
    sa.Column('resolved', sa.Integer(), nullable=False),
    sa.Column('rated', sa.Integer(), nullable=False),
    sa.Column('satisfied', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('ticket_id', 'scope', 'key')
    )
    with op.batch_alter_table('proj_ticket_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_proj_ticket_metrics_scope_key', ['scope', 'key'], unique=False)

    op.create_table('proj_tickets',
    sa.Column('ticket_id', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('channel', sa.String(), nullable=True),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('urgency', sa.String(), nullable=True),
    sa.Column('category', sa.String(), nullable=True),
    sa.Column('catalogue_version', sa.String(), nullable=True),
    sa.Column('classified_by', sa.String(), nullable=True),
    sa.Column('district', sa.String(), nullable=True),
    sa.Column('street', sa.String(), nullable=True),
    sa.Column('community', sa.String(), nullable=True),
    sa.Column('grid', sa.String(), nullable=True),
    sa.Column('lead_unit', sa.String(), nullable=True),
    sa.Column('co_units', sa.String(), nullable=False),
    sa.Column('level', sa.String(), nullable=True),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('master_ticket_id', sa.String(), nullable=True),
    sa.Column('limits', sa.String(), nullable=True),
    sa.Column('sign_for_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('response_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('breaches', sa.Integer(), nullable=False),
    sa.Column('reminders', sa.Integer(), nullable=False),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('escalated_to', sa.String(), nullable=True),
    sa.Column('returns', sa.Integer(), nullable=False),
    sa.Column('reroutes', sa.Integer(), nullable=False),
    sa.Column('reopens', sa.Integer(), nullable=False),
    sa.Column('extensions', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(), nullable=True),
    sa.Column('resolved', sa.Boolean(), nullable=True),
    sa.Column('satisfaction', sa.String(), nullable=True),
    sa.Column('reasonable_demand', sa.Boolean(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('classified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_for_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('ticket_id')
    )
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.create_index('ix_proj_tickets_district', ['district'], unique=False)
        batch_op.create_index('ix_proj_tickets_lead_unit', ['lead_unit'], unique=False)
        batch_op.create_index('ix_proj_tickets_status', ['status'], unique=False)

    op.create_table('proj_timeline',
    sa.Column('event_id', sa.String(), nullable=False),
    sa.Column('ticket_id', sa.String(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('type_rank', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('topic', sa.String(), nullable=False),
    sa.Column('unit', sa.String(), nullable=True),
    sa.Column('units', sa.String(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('correlation_id', sa.String(), nullable=False),
    sa.Column('causation_id', sa.String(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('proj_timeline', schema=None) as batch_op:
        batch_op.create_index('ix_proj_timeline_ticket_id', ['ticket_id'], unique=False)
        batch_op.create_index('ix_proj_timeline_time', ['time'], unique=False)
        batch_op.create_index('ix_proj_timeline_unit', ['unit'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('proj_timeline', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_timeline_unit')
        batch_op.drop_index('ix_proj_timeline_time')
        batch_op.drop_index('ix_proj_timeline_ticket_id')

    op.drop_table('proj_timeline')
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tickets_status')
        batch_op.drop_index('ix_proj_tickets_lead_unit')
        batch_op.drop_index('ix_proj_tickets_district')

    op.drop_table('proj_tickets')
    with op.batch_alter_table('proj_ticket_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_ticket_metrics_scope_key')

    op.drop_table('proj_ticket_metrics')
    with op.batch_alter_table('proj_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tasks_unit_open')
        batch_op.drop_index('ix_proj_tasks_ticket_id')

    op.drop_table('proj_tasks')
    op.drop_table('proj_rebuild_positions')
    op.drop_table('proj_rebuild_pending')
    op.drop_table('proj_meta')
