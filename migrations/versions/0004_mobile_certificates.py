"""Smartphone certificates: devices, single-use challenges, and on certificates the card
certificate a mobile one is linked to and the device that holds its key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mobile_challenges',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_mobile_challenges'))
    )
    with op.batch_alter_table('mobile_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mobile_challenges_expires_at'), ['expires_at'], unique=False)

    op.create_table('mobile_devices',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('device_ref', sa.String(length=128), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('active', 'replaced', 'revoked', name='device_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('flagged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_mobile_devices_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mobile_devices'))
    )
    with op.batch_alter_table('mobile_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mobile_devices_resident_id'), ['resident_id'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('linked_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('device_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_certificates_linked_id'), ['linked_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_certificates_device_id_mobile_devices'), 'mobile_devices', ['device_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_certificates_linked_id_certificates'), 'certificates', ['linked_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_certificates_linked_id_certificates'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_certificates_device_id_mobile_devices'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_certificates_linked_id'))
        batch_op.drop_column('device_id')
        batch_op.drop_column('linked_id')

    with op.batch_alter_table('mobile_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mobile_devices_resident_id'))

    op.drop_table('mobile_devices')
    with op.batch_alter_table('mobile_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mobile_challenges_expires_at'))

    op.drop_table('mobile_challenges')
