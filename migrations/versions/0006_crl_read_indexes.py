"""Indexes for CRL generation: a partial covering index over the stored CRL entries, so a full
CRL reads a shard without touching the table's wide rows, and (generation, shard, recorded-at)
for the second statement of a delta CRL. See jpki/store/tables.py and docs/performance.md.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_shard_recorded',
                              ['ca_generation_id', 'shard', 'revocation_recorded_at'],
                              unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_certificates_crl_entries_pg', 'certificates',
                        ['ca_generation_id', 'shard', 'revoked_at'], unique=False,
                        postgresql_include=['not_after', 'crl_entry'],
                        postgresql_where=sa.text('crl_entry IS NOT NULL'))
    else:
        op.create_index('ix_certificates_crl_entries', 'certificates',
                        ['ca_generation_id', 'shard', 'revoked_at', 'not_after', 'crl_entry'],
                        unique=False, sqlite_where=sa.text('crl_entry IS NOT NULL'))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_certificates_crl_entries_pg', table_name='certificates')
    else:
        op.drop_index('ix_certificates_crl_entries', table_name='certificates')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_shard_recorded')
