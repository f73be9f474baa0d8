"""The signing-password reset with an online password (architecture §7.1): the challenges
given to holder apps and kiosks, the apps' registered keys, the online passwords (scrypt hashes
only), the kiosks' resets and the refused attempts the per-app, per-kiosk and per-card limits
count; and the two client roles, kiosk and holder_app, in api_clients' role check.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_OLD_ROLES = "role IN ('operator', 'station', 'callcenter', 'rp')"
_NEW_ROLES = "role IN ('operator', 'station', 'callcenter', 'rp', 'kiosk', 'holder_app')"


def _roles(check: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table with the new check.
    with op.batch_alter_table('api_clients', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint(op.f('ck_api_clients_client_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_clients_client_role'), sa.text(check))


def upgrade() -> None:
    _roles(_NEW_ROLES)
    op.create_table('pin_reset_challenges',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_pin_reset_challenges'))
    )
    with op.batch_alter_table('pin_reset_challenges', schema=None) as batch_op:
        batch_op.create_index('ix_pin_reset_challenges_client_expires',
                              ['client_id', 'expires_at'], unique=False)
    op.create_table('holder_app_keys',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('registered_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['api_clients.client_id'],
                            name=op.f('fk_holder_app_keys_client_id_api_clients')),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_holder_app_keys'))
    )
    op.create_table('online_passwords',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_client_id', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tries_left', sa.SmallInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('consumed_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'],
                            name=op.f('fk_online_passwords_card_id_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_online_passwords'))
    )
    with op.batch_alter_table('online_passwords', schema=None) as batch_op:
        batch_op.create_index('ix_online_passwords_card_created', ['card_id', 'created_at'],
                              unique=False)
        batch_op.create_index('ix_online_passwords_app_created', ['app_client_id', 'created_at'],
                              unique=False)
    op.create_table('kiosk_resets',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_client_id', sa.String(length=64), nullable=False),
    sa.Column('online_password_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_kiosk_resets_card_id_cards')),
    sa.ForeignKeyConstraint(['online_password_id'], ['online_passwords.id'],
                            name=op.f('fk_kiosk_resets_online_password_id_online_passwords')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kiosk_resets'))
    )
    with op.batch_alter_table('kiosk_resets', schema=None) as batch_op:
        batch_op.create_index('ix_kiosk_resets_kiosk_created', ['kiosk_client_id', 'created_at'],
                              unique=False)
    op.create_table('pin_reset_refusals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('subject', sa.String(length=80), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pin_reset_refusals'))
    )
    with op.batch_alter_table('pin_reset_refusals', schema=None) as batch_op:
        batch_op.create_index('ix_pin_reset_refusals_subject_at', ['subject', 'at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pin_reset_refusals', schema=None) as batch_op:
        batch_op.drop_index('ix_pin_reset_refusals_subject_at')
    op.drop_table('pin_reset_refusals')
    with op.batch_alter_table('kiosk_resets', schema=None) as batch_op:
        batch_op.drop_index('ix_kiosk_resets_kiosk_created')
    op.drop_table('kiosk_resets')
    with op.batch_alter_table('online_passwords', schema=None) as batch_op:
        batch_op.drop_index('ix_online_passwords_app_created')
        batch_op.drop_index('ix_online_passwords_card_created')
    op.drop_table('online_passwords')
    op.drop_table('holder_app_keys')
    with op.batch_alter_table('pin_reset_challenges', schema=None) as batch_op:
        batch_op.drop_index('ix_pin_reset_challenges_client_expires')
    op.drop_table('pin_reset_challenges')
    # Clients of the two new roles cannot stay under the old check.
    op.execute("DELETE FROM api_clients WHERE role IN ('kiosk', 'holder_app')")
    _roles(_OLD_ROLES)
