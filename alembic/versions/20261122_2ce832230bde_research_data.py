"""research data: subjects, visits, annotations, uploads, imports

Revision ID: 2ce832230bde
Revises: 0ceadc824c51
Create Date: 2026-11-22 00:02:25.254882
"""

from alembic import op
import sqlalchemy as sa

import portal.models


revision = '2ce832230bde'
down_revision = '0ceadc824c51'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('media_type', sa.String(length=200), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_sha256'), ['sha256'], unique=False)
        batch_op.create_index('ix_attachments_target', ['target_type', 'target_id'], unique=False)

    op.create_table('metadata_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value_type', sa.String(length=10), nullable=False),
    sa.Column('value_text', sa.Text(), nullable=False),
    sa.Column('value_number', sa.Float(), nullable=True),
    sa.Column('value_date', sa.Date(), nullable=True),
    sa.Column('unit', sa.String(length=40), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('target_type', 'target_id', 'key', name='uq_metadata_target_key')
    )
    with op.batch_alter_table('metadata_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metadata_entries_key'), ['key'], unique=False)
        batch_op.create_index(batch_op.f('ix_metadata_entries_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_metadata_target', ['target_type', 'target_id'], unique=False)

    op.create_table('notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notes_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_notes_target', ['target_type', 'target_id'], unique=False)

    op.create_table('subjects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('species', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'code', name='uq_subject_project_code')
    )
    with op.batch_alter_table('subjects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subjects_project_id'), ['project_id'], unique=False)

    op.create_table('tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('target_type', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('target_type', 'target_id', 'name', name='uq_tag_target_name')
    )
    with op.batch_alter_table('tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tags_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_tags_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_tags_target', ['target_type', 'target_id'], unique=False)

    op.create_table('visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=100), nullable=False),
    sa.Column('visit_date', sa.Date(), nullable=True),
    sa.Column('instrument', sa.String(length=200), nullable=False),
    sa.Column('operator', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject_id', 'code', name='uq_visit_subject_code')
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_subject_id'), ['subject_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_visit_date'), ['visit_date'], unique=False)

    op.create_table('import_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'source_path', name='uq_import_project_path')
    )
    with op.batch_alter_table('import_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_records_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_import_records_sha256'), ['sha256'], unique=False)

    op.create_table('uploads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=True),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('upload_metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', portal.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dataset_id', sa.String(length=36), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_uploads_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('visit_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('modality', sa.String(length=60), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('storage_mode', sa.String(length=20), nullable=False, server_default='copy'))
        batch_op.add_column(sa.Column('original_location', sa.Text(), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_datasets_modality'), ['modality'], unique=False)
        batch_op.create_index(batch_op.f('ix_datasets_subject_id'), ['subject_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_datasets_visit_id'), ['visit_id'], unique=False)
        batch_op.create_foreign_key('fk_datasets_visit_id_visits', 'visits', ['visit_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key('fk_datasets_subject_id_subjects', 'subjects', ['subject_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('derived_measures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('visit_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_derived_measures_subject_id'), ['subject_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_derived_measures_visit_id'), ['visit_id'], unique=False)
        batch_op.create_foreign_key('fk_derived_measures_subject_id_subjects', 'subjects', ['subject_id'], ['id'], ondelete='CASCADE')
        batch_op.create_foreign_key('fk_derived_measures_visit_id_visits', 'visits', ['visit_id'], ['id'], ondelete='CASCADE')

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quota_bytes', sa.BigInteger(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('quota_bytes')

    with op.batch_alter_table('derived_measures', schema=None) as batch_op:
        batch_op.drop_constraint('fk_derived_measures_subject_id_subjects', type_='foreignkey')
        batch_op.drop_constraint('fk_derived_measures_visit_id_visits', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_derived_measures_visit_id'))
        batch_op.drop_index(batch_op.f('ix_derived_measures_subject_id'))
        batch_op.drop_column('visit_id')
        batch_op.drop_column('subject_id')

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_constraint('fk_datasets_subject_id_subjects', type_='foreignkey')
        batch_op.drop_constraint('fk_datasets_visit_id_visits', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_datasets_visit_id'))
        batch_op.drop_index(batch_op.f('ix_datasets_subject_id'))
        batch_op.drop_index(batch_op.f('ix_datasets_modality'))
        batch_op.drop_column('original_location')
        batch_op.drop_column('storage_mode')
        batch_op.drop_column('description')
        batch_op.drop_column('modality')
        batch_op.drop_column('visit_id')
        batch_op.drop_column('subject_id')

    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_uploads_user_id'))
        batch_op.drop_index(batch_op.f('ix_uploads_project_id'))

    op.drop_table('uploads')
    with op.batch_alter_table('import_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_records_sha256'))
        batch_op.drop_index(batch_op.f('ix_import_records_project_id'))

    op.drop_table('import_records')
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visits_visit_date'))
        batch_op.drop_index(batch_op.f('ix_visits_subject_id'))
        batch_op.drop_index(batch_op.f('ix_visits_project_id'))

    op.drop_table('visits')
    with op.batch_alter_table('tags', schema=None) as batch_op:
        batch_op.drop_index('ix_tags_target')
        batch_op.drop_index(batch_op.f('ix_tags_project_id'))
        batch_op.drop_index(batch_op.f('ix_tags_name'))

    op.drop_table('tags')
    with op.batch_alter_table('subjects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subjects_project_id'))

    op.drop_table('subjects')
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.drop_index('ix_notes_target')
        batch_op.drop_index(batch_op.f('ix_notes_project_id'))

    op.drop_table('notes')
    with op.batch_alter_table('metadata_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_metadata_target')
        batch_op.drop_index(batch_op.f('ix_metadata_entries_project_id'))
        batch_op.drop_index(batch_op.f('ix_metadata_entries_key'))

    op.drop_table('metadata_entries')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_target')
        batch_op.drop_index(batch_op.f('ix_attachments_sha256'))
        batch_op.drop_index(batch_op.f('ix_attachments_project_id'))

    op.drop_table('attachments')
