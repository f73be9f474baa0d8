"""The dashboard's feeds: OCSP traffic per minute (every serving process adds to it),
relying-party calls per day (summed from the audit log by a maintenance job) and that roll-up's
position in the chain.

Numbered two above 0014 so as not to clash with a concurrent 0015; it revises 0014 — rechain
it onto 0015 if that lands first.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0014'
branch_labels = None
depends_on = None

BUCKETS = 13  # len(jpki.telemetry.OCSP_BUCKETS) + 1, as of this revision


def upgrade() -> None:
    op.create_table('ocsp_traffic',
    sa.Column('minute', sa.DateTime(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    *(sa.Column(f'bucket_{i}', sa.BigInteger(), nullable=False) for i in range(BUCKETS)),
    sa.PrimaryKeyConstraint('minute', 'outcome', name=op.f('pk_ocsp_traffic'))
    )
    op.create_table('rp_usage',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('relying_party', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=False),
    sa.Column('refused', sa.BigInteger(), nullable=False),
    sa.Column('items', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'relying_party', 'scope', name=op.f('pk_rp_usage'))
    )
    rollup = op.create_table('rp_usage_rollup',
    sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rp_usage_rollup'))
    )
    # From the first record: the first roll-ups sum the log written before this revision.
    op.bulk_insert(rollup, [{'id': 1, 'seq': 0, 'at': None}])


def downgrade() -> None:
    op.drop_table('rp_usage_rollup')
    op.drop_table('rp_usage')
    op.drop_table('ocsp_traffic')
