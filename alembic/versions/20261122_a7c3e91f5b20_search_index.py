"""search index: search_documents (+ FTS5 search_fts on SQLite, tsvector + GIN on PostgreSQL)

These tables are managed with SQL by portal/search_index.py, outside the ORM models (their names start with
`search_`). A database that already holds data gets its documents with `tilescope search reindex`.

Revision ID: a7c3e91f5b20
Revises: 2ce832230bde
Create Date: 2026-11-22 00:10:00
"""

import sqlalchemy as sa

from alembic import op

revision = 'a7c3e91f5b20'
down_revision = '2ce832230bde'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'search_documents',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('object_type', sa.String(20), nullable=False),
        sa.Column('object_id', sa.String(36), nullable=False),
        sa.Column('project_id', sa.Integer(), sa.ForeignKey('projects.id', ondelete='CASCADE'), nullable=False),
        sa.Column('dataset_id', sa.String(36), nullable=True),
        sa.Column('subject_id', sa.Integer(), nullable=True),
        sa.Column('visit_id', sa.Integer(), nullable=True),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('scope', sa.Text(), nullable=False, server_default=''),  # filter tokens: zzp<project> zzt<type>…
        sa.Column('modality', sa.String(60), nullable=False, server_default=''),
        sa.Column('ndim', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(20), nullable=False, server_default=''),
        sa.Column('object_date', sa.Date(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('object_type', 'object_id', name='search_documents_object'),
    )
    op.create_index('search_documents_project', 'search_documents', ['project_id', 'object_type'])
    op.create_index('search_documents_type_created', 'search_documents', ['object_type', 'created_at'])
    op.create_index('search_documents_dataset', 'search_documents', ['dataset_id'])
    op.create_index('search_documents_subject', 'search_documents', ['subject_id'])
    op.create_index('search_documents_visit', 'search_documents', ['visit_id'])
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute("CREATE VIRTUAL TABLE search_fts USING fts5(title, body, scope, content='search_documents', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2', prefix='2 3')")
        op.execute("CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN "
                   "INSERT INTO search_fts(rowid, title, body, scope) VALUES (new.id, new.title, new.body, new.scope); END")
        op.execute("CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN "
                   "INSERT INTO search_fts(search_fts, rowid, title, body, scope) VALUES ('delete', old.id, old.title, old.body, old.scope); END")
        op.execute("CREATE TRIGGER search_documents_au AFTER UPDATE ON search_documents BEGIN "
                   "INSERT INTO search_fts(search_fts, rowid, title, body, scope) VALUES ('delete', old.id, old.title, old.body, old.scope); "
                   "INSERT INTO search_fts(rowid, title, body, scope) VALUES (new.id, new.title, new.body, new.scope); END")
    elif dialect == 'postgresql':
        op.execute("ALTER TABLE search_documents ADD COLUMN document tsvector NOT NULL DEFAULT ''::tsvector")
        op.execute("CREATE INDEX search_documents_document ON search_documents USING gin (document)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for trigger in ('search_documents_ai', 'search_documents_ad', 'search_documents_au'):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table('search_documents')
