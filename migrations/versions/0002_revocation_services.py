"""Revocation services: CRL numbers and publications, each revoked certificate's CRL entry
stored with it, and the pre-signed OCSP response cache.

Certificates revoked before this revision get their entry computed here, with the encoding
frozen as it was written (RFC 5280 §5.1.2.6; reasonCode absent for "unspecified").

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from asn1crypto import crl as asn1_crl

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crl_numbers',
    sa.Column('ca_generation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('last_number', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['ca_generation_id'], ['ca_generations.id'], name=op.f('fk_crl_numbers_ca_generation_id_ca_generations')),
    sa.PrimaryKeyConstraint('ca_generation_id', 'scope', name=op.f('pk_crl_numbers'))
    )
    op.create_table('crl_publications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ca_generation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('number', sa.BigInteger(), nullable=False),
    sa.Column('base_number', sa.BigInteger(), nullable=True),
    sa.Column('this_update', sa.DateTime(), nullable=False),
    sa.Column('next_update', sa.DateTime(), nullable=False),
    sa.Column('entries', sa.BigInteger(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ca_generation_id'], ['ca_generations.id'], name=op.f('fk_crl_publications_ca_generation_id_ca_generations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crl_publications')),
    sa.UniqueConstraint('ca_generation_id', 'scope', 'number', name='uq_crl_publications_number')
    )
    with op.batch_alter_table('crl_publications', schema=None) as batch_op:
        batch_op.create_index('ix_crl_publications_latest', ['ca_generation_id', 'scope', 'kind', 'number'], unique=False)

    op.create_table('ocsp_responses',
    sa.Column('ca_generation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=8), nullable=False),
    sa.Column('serial', sa.String(length=40), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('this_update', sa.DateTime(), nullable=False),
    sa.Column('next_update', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['ca_generation_id'], ['ca_generations.id'], name=op.f('fk_ocsp_responses_ca_generation_id_ca_generations')),
    sa.PrimaryKeyConstraint('ca_generation_id', 'hash_algorithm', 'serial', name=op.f('pk_ocsp_responses'))
    )
    with op.batch_alter_table('ocsp_responses', schema=None) as batch_op:
        batch_op.create_index('ix_ocsp_responses_serial', ['serial'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crl_entry', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('hold_released_at', sa.DateTime(), nullable=True))

    certificates = sa.table('certificates', sa.column('id', sa.BigInteger()),
                            sa.column('serial', sa.String()),
                            sa.column('revoked_at', sa.DateTime()),
                            sa.column('revocation_reason', sa.SmallInteger()),
                            sa.column('crl_entry', sa.LargeBinary()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(certificates.c.id, certificates.c.serial,
                                  certificates.c.revoked_at, certificates.c.revocation_reason)
                        .where(certificates.c.revoked_at.is_not(None))).all()
    for row in rows:
        conn.execute(certificates.update().where(certificates.c.id == row.id)
                     .values(crl_entry=_entry(row.serial, row.revoked_at, row.revocation_reason)))



def _entry(serial: str, revoked_at: datetime, reason: int | None) -> bytes:
    at = revoked_at.replace(tzinfo=UTC)
    when = {"utc_time": at} if at.year < 2050 else {"general_time": at}
    value: dict[str, object] = {"user_certificate": int(serial, 16), "revocation_date": when}
    if reason not in (None, 0, 8):
        value["crl_entry_extensions"] = [{"extn_id": "crl_reason", "critical": False,
                                          "extn_value": asn1_crl.CRLReason(reason)}]
    return asn1_crl.RevokedCertificate(value).dump()


def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_column('hold_released_at')
        batch_op.drop_column('crl_entry')

    with op.batch_alter_table('crl_publications', schema=None) as batch_op:
        batch_op.drop_index('ix_crl_publications_latest')

    with op.batch_alter_table('ocsp_responses', schema=None) as batch_op:
        batch_op.drop_index('ix_ocsp_responses_serial')

    op.drop_table('ocsp_responses')
    op.drop_table('crl_publications')
    op.drop_table('crl_numbers')
