"""Bounds on smartphone challenges: who asked for each (a source address, to cap what one source
holds) with an index to count them, and a partial index over the used ones, which the
maintenance job deletes with the expired ones. See jpki/mobile/service.py (new_challenge,
purge_challenges).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mobile_challenges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_mobile_challenges_source_expires_at', ['source', 'expires_at'],
                              unique=False)
    op.create_index('ix_mobile_challenges_used_at', 'mobile_challenges', ['used_at'],
                    unique=False, sqlite_where=sa.text('used_at IS NOT NULL'),
                    postgresql_where=sa.text('used_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_mobile_challenges_used_at', table_name='mobile_challenges')
    with op.batch_alter_table('mobile_challenges', schema=None) as batch_op:
        batch_op.drop_index('ix_mobile_challenges_source_expires_at')
        batch_op.drop_column('source')
