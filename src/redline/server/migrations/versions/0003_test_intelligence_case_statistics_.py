"""test intelligence: case statistics, quarantine, verdicts, error groups

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing rows get the defaults of an empty history
    op.create_table('error_groups',
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('error_type', sa.String(length=255), nullable=True),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_error_groups_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'fingerprint', name=op.f('pk_error_groups'))
    )
    with op.batch_alter_table('error_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_error_groups_project_id_last_seen'), ['project_id', 'last_seen'], unique=False)

    op.create_table('error_group_cases',
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=40), nullable=False),
    sa.Column('test_case_id', sa.String(length=40), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_error_group_cases_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['test_case_id'], ['test_cases.id'], name=op.f('fk_error_group_cases_test_case_id_test_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'fingerprint', 'test_case_id', name=op.f('pk_error_group_cases'))
    )
    with op.batch_alter_table('error_group_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_error_group_cases_test_case_id'), ['test_case_id'], unique=False)

    op.create_table('quarantine_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('test_case_id', sa.String(length=40), nullable=False),
    sa.Column('action', sa.String(length=12), nullable=False),
    sa.Column('automatic', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('owner', sa.String(length=255), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('actor_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_quarantine_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_quarantine_events_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['test_case_id'], ['test_cases.id'], name=op.f('fk_quarantine_events_test_case_id_test_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine_events'))
    )
    with op.batch_alter_table('quarantine_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_events_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_events_test_case_id_created_at'), ['test_case_id', 'created_at'], unique=False)

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verdict', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('quarantined_failures', sa.Integer(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('stats_applied', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('status', sa.String(length=10), nullable=False, server_default='new'))
        batch_op.add_column(sa.Column('flakiness_score', sa.Float(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('total_runs', sa.Integer(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('flaky_runs', sa.Integer(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('failed_runs', sa.Integer(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('avg_duration', sa.BigInteger(), nullable=False, server_default=sa.text('0')))
        batch_op.add_column(sa.Column('last_status', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('last_run_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_flaky_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_failed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('is_quarantined', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('quarantine_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('quarantine_owner', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('quarantined_by', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('quarantined_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('quarantine_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('quarantine_manual', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_test_cases_project_id_flakiness_score'), ['project_id', 'flakiness_score'], unique=False)
        batch_op.create_index(batch_op.f('ix_test_cases_project_id_is_quarantined'), ['project_id', 'is_quarantined'], unique=False)
        batch_op.create_index(batch_op.f('ix_test_cases_quarantined_by'), ['quarantined_by'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_test_cases_quarantined_by_users'), 'users', ['quarantined_by'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error_fingerprint', sa.String(length=40), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.drop_column('error_fingerprint')

    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_test_cases_quarantined_by_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_test_cases_quarantined_by'))
        batch_op.drop_index(batch_op.f('ix_test_cases_project_id_is_quarantined'))
        batch_op.drop_index(batch_op.f('ix_test_cases_project_id_flakiness_score'))
        batch_op.drop_column('quarantine_manual')
        batch_op.drop_column('quarantine_expires_at')
        batch_op.drop_column('quarantined_at')
        batch_op.drop_column('quarantined_by')
        batch_op.drop_column('quarantine_owner')
        batch_op.drop_column('quarantine_reason')
        batch_op.drop_column('is_quarantined')
        batch_op.drop_column('tags')
        batch_op.drop_column('last_failed_at')
        batch_op.drop_column('last_flaky_at')
        batch_op.drop_column('last_run_at')
        batch_op.drop_column('last_status')
        batch_op.drop_column('avg_duration')
        batch_op.drop_column('failed_runs')
        batch_op.drop_column('flaky_runs')
        batch_op.drop_column('total_runs')
        batch_op.drop_column('flakiness_score')
        batch_op.drop_column('status')
        batch_op.drop_column('recent')

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('stats_applied')
        batch_op.drop_column('quarantined_failures')
        batch_op.drop_column('verdict')

    with op.batch_alter_table('quarantine_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_events_test_case_id_created_at'))
        batch_op.drop_index(batch_op.f('ix_quarantine_events_actor_id'))

    op.drop_table('quarantine_events')
    with op.batch_alter_table('error_group_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_error_group_cases_test_case_id'))

    op.drop_table('error_group_cases')
    with op.batch_alter_table('error_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_error_groups_project_id_last_seen'))

    op.drop_table('error_groups')
