"""A resident's name reading (residents.name_kana, 氏名の振り仮名) and an index on the date of
birth, so that a counter finds a resident from what the person tells it (jpki.registry.residents
.ResidentService.find) without reading the registry.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_kana', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_residents_birth_date', ['birth_date', 'municipality_code'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index('ix_residents_birth_date')
        batch_op.drop_column('name_kana')

