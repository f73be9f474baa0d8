"""A change feed for API clients and relying parties: ``api_clients.changed_at`` (new; existing
rows take their creation time) and indexes on it and on ``relying_parties.updated_at``, so that
each server process can keep the credentials in memory and read "what changed since" in one
index range per table (jpki/access/kept_clients.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE api_clients SET changed_at = created_at")
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.alter_column('changed_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.create_index('ix_api_clients_changed_at', ['changed_at'], unique=False)
    op.create_index('ix_relying_parties_updated_at', 'relying_parties', ['updated_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_relying_parties_updated_at', table_name='relying_parties')
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.drop_index('ix_api_clients_changed_at')
        batch_op.drop_column('changed_at')
