"""An index on certificates.device_id, for the certificates of one phone.

The mobile sweep, a phone's suspension or its loss look a device's certificates up by
device_id (jpki.store.repositories.SqlCertificates.for_device). Without an index each lookup
read the whole table: 0.73 s at 10^6 certificates and 1.1 to 2.8 s at 10^7 (a quiet and a busy
machine), so the sweep of ~6,600 phones took 27 minutes at 10^7 (docs/scale.md, "What the
curves showed"); with it, 0.1 ms a lookup and 22 s the sweep. Partial,
because card certificates, nine in ten rows, carry no device.

A plain CREATE INDEX blocks writes to the table while it runs (minutes on a national table).
Where that matters, build it first by hand, without blocking, under the same name; this
migration then finds it and does nothing (docs/deployment.md, "Upgrades"):

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_certificates_device_id
        ON certificates (device_id) WHERE device_id IS NOT NULL;

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

_HAS_DEVICE = sa.text('device_id IS NOT NULL')


def upgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_device_id', ['device_id'], unique=False,
                              if_not_exists=True, sqlite_where=_HAS_DEVICE,
                              postgresql_where=_HAS_DEVICE)


def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_device_id')
