"""The counter: identity-proofing records, station client kinds, and certificate delivery
(who issued a certificate, whether a station must confirm it reached the card, and when).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('proofings',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('station', sa.String(length=128), nullable=False),
    sa.Column('presence', sa.String(length=16), nullable=False),
    sa.Column('pattern', sa.String(length=1), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('used_for', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_proofings_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proofings'))
    )
    with op.batch_alter_table('proofings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proofings_resident_id'), ['resident_id'], unique=False)

    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('station_kind', sa.String(length=16), nullable=True))

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('delivery_required', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('delivered_at', sa.DateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('delivery_required')
        batch_op.drop_column('issued_by')

    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.drop_column('station_kind')

    with op.batch_alter_table('proofings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proofings_resident_id'))

    op.drop_table('proofings')
