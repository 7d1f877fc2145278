"""Grid workers (issue 14.4): who found a ticket on patrol, the level that handled it, whether a grid worker
resolved it on the spot or an area unit escalated it - the board's solved-at-the-lowest-level rate.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reported_by', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('handled_level', sa.String(), nullable=True))
        batch_op.add_column(sa.Column('on_the_spot', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('escalated_up', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('proj_tickets', schema=None) as batch_op:
        batch_op.drop_column('escalated_up')
        batch_op.drop_column('on_the_spot')
        batch_op.drop_column('handled_level')
        batch_op.drop_column('reported_by')
