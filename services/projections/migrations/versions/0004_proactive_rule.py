"""The proactive rule that raised a ticket: the supervisors' board counts, per rule, the residents it found
(qualified) and those whose ticket is closed (reached).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('proactive_rule', sa.String(), nullable=True))
        batch_op.create_index('ix_proj_tickets_proactive', ['proactive_rule', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_proj_tickets_proactive')
        batch_op.drop_column('proactive_rule')
