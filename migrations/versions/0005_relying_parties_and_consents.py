"""Relying parties: their registration (kind, parent platform operator, declared purposes,
status), the link and rotated secret of their API clients, and holders' signed consents to the
latest basic 4 information (nonce unique, so a consent counts once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relying_parties',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('platform_operator', 'service_provider', name='relying_party_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('purposes', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('active', 'suspended', name='relying_party_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['relying_parties.id'], name=op.f('fk_relying_parties_parent_id_relying_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relying_parties'))
    )
    with op.batch_alter_table('relying_parties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_relying_parties_parent_id'), ['parent_id'], unique=False)

    op.create_table('consents',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('relying_party_id', sa.String(length=32), nullable=False),
    sa.Column('items', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('nonce_digest', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('signed_der', sa.LargeBinary(), nullable=False),
    sa.Column('signer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('signer_serial', sa.String(length=40), nullable=False),
    sa.Column('signed_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['relying_party_id'], ['relying_parties.id'], name=op.f('fk_consents_relying_party_id_relying_parties')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_consents_resident_id_residents')),
    sa.ForeignKeyConstraint(['signer_id'], ['certificates.id'], name=op.f('fk_consents_signer_id_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents')),
    sa.UniqueConstraint('nonce_digest', name=op.f('uq_consents_nonce_digest'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_relying_party_id'), ['relying_party_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_consents_resident_id'), ['resident_id'], unique=False)

    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relying_party_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_hash', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_clients_relying_party_id'), ['relying_party_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_api_clients_relying_party_id_relying_parties'), 'relying_parties', ['relying_party_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('api_clients', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_clients_relying_party_id_relying_parties'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_clients_relying_party_id'))
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret_hash')
        batch_op.drop_column('relying_party_id')

    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consents_resident_id'))
        batch_op.drop_index(batch_op.f('ix_consents_relying_party_id'))

    op.drop_table('consents')
    with op.batch_alter_table('relying_parties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_relying_parties_parent_id'))

    op.drop_table('relying_parties')
