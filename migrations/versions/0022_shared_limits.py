"""Limits every node must agree on, in the database (docs/deployment.md, "What must hold across
nodes"): the token buckets the nodes lease blocks of tokens from (relying parties, requests
without credentials), and the budgets of failed authentications (per client id or user name,
per source address). Both were held in each serving process before.

Numbered 0022 after 0021, which concurrent work adds; until that lands it is chained to 0020,
and the lead rechains it at merge.

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_buckets',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('refilled_at', sa.Float(), nullable=False),
    sa.Column('granted', sa.Integer(), nullable=False),
    sa.Column('full_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'subject', name=op.f('pk_rate_buckets'))
    )
    with op.batch_alter_table('rate_buckets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_buckets_full_at'), ['full_at'], unique=False)
    op.create_table('auth_failures',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('remaining', sa.Float(), nullable=False),
    sa.Column('counted_at', sa.Float(), nullable=False),
    sa.Column('blocked_until', sa.Float(), nullable=True),
    sa.Column('reported_at', sa.Float(), nullable=True),
    sa.Column('reported', sa.Integer(), nullable=False),
    sa.Column('whole_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'subject', name=op.f('pk_auth_failures'))
    )
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_failures_blocked_until'), ['blocked_until'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_auth_failures_whole_at'), ['whole_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_failures_whole_at'))
        batch_op.drop_index(batch_op.f('ix_auth_failures_blocked_until'))
    op.drop_table('auth_failures')
    with op.batch_alter_table('rate_buckets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_buckets_full_at'))
    op.drop_table('rate_buckets')
