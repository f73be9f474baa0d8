"""The municipality registry (architecture §5.6): a municipality's reading, status (merged or
not) and current CRL shard; the CRL shards, each with the distribution-point name it was opened
with, frozen; and the newest CRL times per scope (crl_numbers.last_full_at, last_delta_at).

Existing municipalities keep their code, name and romaji exactly: certificates already issued
name them. Each gets one shard named by its code, with the distribution-point name those
certificates carry (reference §1.2: the prefecture's and the city's romaji). The prefectures'
romaji are copied here as jpki.municipalities wrote them when this revision was made, so that
the revision says the same thing whatever that module later becomes.

Numbered 0020, after the highest revision present when it landed (0019; 0015 and 0017 were
left free by concurrent work).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

_PREFECTURE_ROMAJI = dict([
    ("01", "Hokkaido"),
    ("02", "Aomori-ken"),
    ("03", "Iwate-ken"),
    ("04", "Miyagi-ken"),
    ("05", "Akita-ken"),
    ("06", "Yamagata-ken"),
    ("07", "Fukushima-ken"),
    ("08", "Ibaraki-ken"),
    ("09", "Tochigi-ken"),
    ("10", "Gunma-ken"),
    ("11", "Saitama-ken"),
    ("12", "Chiba-ken"),
    ("13", "Tokyo-to"),
    ("14", "Kanagawa-ken"),
    ("15", "Niigata-ken"),
    ("16", "Toyama-ken"),
    ("17", "Ishikawa-ken"),
    ("18", "Fukui-ken"),
    ("19", "Yamanashi-ken"),
    ("20", "Nagano-ken"),
    ("21", "Gifu-ken"),
    ("22", "Shizuoka-ken"),
    ("23", "Aichi-ken"),
    ("24", "Mie-ken"),
    ("25", "Shiga-ken"),
    ("26", "Kyoto-fu"),
    ("27", "Osaka-fu"),
    ("28", "Hyogo-ken"),
    ("29", "Nara-ken"),
    ("30", "Wakayama-ken"),
    ("31", "Tottori-ken"),
    ("32", "Shimane-ken"),
    ("33", "Okayama-ken"),
    ("34", "Hiroshima-ken"),
    ("35", "Yamaguchi-ken"),
    ("36", "Tokushima-ken"),
    ("37", "Kagawa-ken"),
    ("38", "Ehime-ken"),
    ("39", "Kochi-ken"),
    ("40", "Fukuoka-ken"),
    ("41", "Saga-ken"),
    ("42", "Nagasaki-ken"),
    ("43", "Kumamoto-ken"),
    ("44", "Oita-ken"),
    ("45", "Miyazaki-ken"),
    ("46", "Kagoshima-ken"),
    ("47", "Okinawa-ken"),
])


def upgrade() -> None:
    # Plain ADD COLUMNs, never a batch copy: on SQLite a copy would drop and re-create the
    # table residents reference, and every existing row stays untouched.
    op.add_column('municipalities', sa.Column('name_kana', sa.String(length=100), nullable=True))
    op.add_column('municipalities', sa.Column('status', sa.String(length=16),
                                              server_default='active', nullable=False))
    op.add_column('municipalities', sa.Column('merged_into', sa.String(length=6),
                                              nullable=True))
    op.add_column('municipalities', sa.Column('shard', sa.String(length=16), nullable=True))
    op.create_table('crl_shards',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('municipality_code', sa.String(length=6), nullable=False),
    sa.Column('prefecture_romaji', sa.String(length=100), nullable=False),
    sa.Column('city_romaji', sa.String(length=100), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['municipality_code'], ['municipalities.code'],
                            name=op.f('fk_crl_shards_municipality_code_municipalities')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_crl_shards')),
    sa.UniqueConstraint('prefecture_romaji', 'city_romaji', name='uq_crl_shards_dp_name')
    )
    op.create_index(op.f('ix_crl_shards_municipality_code'), 'crl_shards',
                    ['municipality_code'], unique=False)
    op.add_column('crl_numbers', sa.Column('last_full_at', sa.DateTime(), nullable=True))
    op.add_column('crl_numbers', sa.Column('last_delta_at', sa.DateTime(), nullable=True))

    conn = op.get_bind()
    municipalities = sa.table('municipalities', sa.column('code', sa.String),
                              sa.column('name_romaji', sa.String),
                              sa.column('shard', sa.String))
    shards = sa.table('crl_shards', sa.column('name', sa.String),
                      sa.column('municipality_code', sa.String),
                      sa.column('prefecture_romaji', sa.String),
                      sa.column('city_romaji', sa.String))
    rows = conn.execute(sa.select(municipalities.c.code, municipalities.c.name_romaji)).all()
    if rows:
        conn.execute(sa.insert(shards), [
            {'name': code, 'municipality_code': code,
             'prefecture_romaji': _PREFECTURE_ROMAJI[code[:2]], 'city_romaji': romaji}
            for code, romaji in rows])
    conn.execute(sa.update(municipalities).values(shard=municipalities.c.code))
    # The newest full and delta CRL of each scope published so far.
    numbers = sa.table('crl_numbers', sa.column('ca_generation_id', sa.BigInteger),
                       sa.column('scope', sa.String), sa.column('last_full_at', sa.DateTime),
                       sa.column('last_delta_at', sa.DateTime))
    publications = sa.table('crl_publications', sa.column('ca_generation_id', sa.BigInteger),
                            sa.column('scope', sa.String), sa.column('kind', sa.String),
                            sa.column('this_update', sa.DateTime))

    def newest(kind: str) -> sa.ScalarSelect[object]:
        return (sa.select(sa.func.max(publications.c.this_update))
                .where(publications.c.ca_generation_id == numbers.c.ca_generation_id,
                       publications.c.scope == numbers.c.scope, publications.c.kind == kind)
                .scalar_subquery())

    conn.execute(sa.update(numbers).values(last_full_at=newest('full'),
                                           last_delta_at=newest('delta')))


def downgrade() -> None:
    op.drop_column('crl_numbers', 'last_delta_at')
    op.drop_column('crl_numbers', 'last_full_at')
    op.drop_index(op.f('ix_crl_shards_municipality_code'), table_name='crl_shards')
    op.drop_table('crl_shards')
    op.drop_column('municipalities', 'shard')
    op.drop_column('municipalities', 'merged_into')
    op.drop_column('municipalities', 'status')
    op.drop_column('municipalities', 'name_kana')
