"""initial schema: municipalities, residents, cards, CA generations, OCSP responders,
certificates, API clients and the audit chain.

Column types are spelled out here (not imported from jpki.store.types) so that this revision
keeps meaning what it meant when it was written; UtcDateTime is a naive DateTime holding UTC and
the revocation reason a SmallInteger holding the RFC 5280 code.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_clients',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.Enum('operator', 'station', 'callcenter', 'rp', name='client_role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('active', 'suspended', name='client_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_clients')),
    sa.UniqueConstraint('client_id', name=op.f('uq_api_clients_client_id'))
    )
    op.create_table('audit_head',
    sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('prev_mac', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log'))
    )
    op.create_table('ca_generations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ca', sa.Enum('sign', 'auth', name='ca_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('key_label', sa.String(length=64), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('subject_key_id', sa.LargeBinary(length=32), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('not_after', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ca_generations')),
    sa.UniqueConstraint('ca', 'generation', name='uq_ca_generations_ca_generation'),
    sa.UniqueConstraint('key_label', name=op.f('uq_ca_generations_key_label'))
    )
    op.create_table('municipalities',
    sa.Column('code', sa.String(length=6), nullable=False),
    sa.Column('name_ja', sa.String(length=100), nullable=False),
    sa.Column('name_romaji', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_municipalities'))
    )
    op.create_table('ocsp_responders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ca_generation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key_label', sa.String(length=64), nullable=False),
    sa.Column('serial', sa.String(length=40), nullable=False),
    sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('not_after', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ca_generation_id'], ['ca_generations.id'], name=op.f('fk_ocsp_responders_ca_generation_id_ca_generations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ocsp_responders')),
    sa.UniqueConstraint('serial', name=op.f('uq_ocsp_responders_serial'))
    )
    with op.batch_alter_table('ocsp_responders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ocsp_responders_ca_generation_id'), ['ca_generation_id'], unique=False)

    op.create_table('residents',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('municipality_code', sa.String(length=6), nullable=False),
    sa.Column('registry_source', sa.Enum('juminhyo', 'koseki_fuhyo', name='registry_source', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('status', sa.Enum('active', 'deceased', name='resident_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('dv_support', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('sex', sa.SmallInteger(), nullable=False),
    sa.Column('address', sa.String(length=400), nullable=False),
    sa.Column('emigrated_on', sa.Date(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['municipality_code'], ['municipalities.code'], name=op.f('fk_residents_municipality_code_municipalities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_residents'))
    )
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_residents_municipality_code'), ['municipality_code'], unique=False)

    op.create_table('cards',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('status', sa.Enum('active', 'lost', 'returned', 'replaced', name='card_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_cards_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cards')),
    sa.UniqueConstraint('number', name=op.f('uq_cards_number'))
    )
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index('ix_cards_resident_status', ['resident_id', 'status'], unique=False)

    op.create_table('certificates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('serial', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.Enum('card_sign', 'card_auth', 'mobile_sign', 'mobile_auth', name='cert_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('resident_id', sa.String(length=32), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('ca_generation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.Enum('pending', 'issued', 'abandoned', name='cert_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=False),
    sa.Column('not_after', sa.DateTime(), nullable=False),
    sa.Column('shard', sa.String(length=16), nullable=False),
    sa.Column('registry_source', sa.Enum('juminhyo', 'koseki_fuhyo', name='cert_registry_source', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('public_key_sha256', sa.String(length=64), nullable=False),
    sa.Column('tbs_der', sa.LargeBinary(), nullable=True),
    sa.Column('der', sa.LargeBinary(), nullable=True),
    sa.Column('predecessor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('sibling_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revocation_reason', sa.SmallInteger(), nullable=True),
    sa.Column('revocation_recorded_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ca_generation_id'], ['ca_generations.id'], name=op.f('fk_certificates_ca_generation_id_ca_generations')),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_certificates_card_id_cards')),
    sa.ForeignKeyConstraint(['predecessor_id'], ['certificates.id'], name=op.f('fk_certificates_predecessor_id_certificates')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_certificates_resident_id_residents')),
    sa.ForeignKeyConstraint(['sibling_id'], ['certificates.id'], name=op.f('fk_certificates_sibling_id_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('serial', name=op.f('uq_certificates_serial'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificates_card_id'), ['card_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_predecessor_id'), ['predecessor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_public_key_sha256'), ['public_key_sha256'], unique=False)
        batch_op.create_index('ix_certificates_resident_kind', ['resident_id', 'kind'], unique=False)
        batch_op.create_index('ix_certificates_revocation_recorded', ['revocation_recorded_at'], unique=False)
        batch_op.create_index('ix_certificates_shard_revoked', ['ca_generation_id', 'shard', 'revoked_at'], unique=False)
        batch_op.create_index('ix_certificates_status_created', ['status', 'created_at'], unique=False)

    # The audit chain's head row starts at the genesis value (jpki.audit.GENESIS_MAC).
    op.bulk_insert(sa.table('audit_head', sa.column('id', sa.SmallInteger()),
                            sa.column('seq', sa.BigInteger()), sa.column('mac', sa.String(64))),
                   [{'id': 1, 'seq': 0, 'mac': '0' * 64}])



def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_status_created')
        batch_op.drop_index('ix_certificates_shard_revoked')
        batch_op.drop_index('ix_certificates_revocation_recorded')
        batch_op.drop_index('ix_certificates_resident_kind')
        batch_op.drop_index(batch_op.f('ix_certificates_public_key_sha256'))
        batch_op.drop_index(batch_op.f('ix_certificates_predecessor_id'))
        batch_op.drop_index(batch_op.f('ix_certificates_card_id'))

    op.drop_table('certificates')
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_resident_status')

    op.drop_table('cards')
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_residents_municipality_code'))

    op.drop_table('residents')
    with op.batch_alter_table('ocsp_responders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocsp_responders_ca_generation_id'))

    op.drop_table('ocsp_responders')
    op.drop_table('municipalities')
    op.drop_table('ca_generations')
    op.drop_table('audit_log')
    op.drop_table('audit_head')
    op.drop_table('api_clients')
