"""executed runs: plans, runner tokens, run logs, schedule fires

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

Executed runs (issue 24) reuse `runs` with columns of their own (all nullable: a reported
run has none of them); `runs.plan_id` has no foreign key, so that SQLite adds the columns
without copying the table. Teams get `execution_budget_seconds` (NULL: no limit).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plans',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('command', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('source', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('env', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('queue_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('report_paths', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('max_concurrent_runs', sa.Integer(), nullable=False),
    sa.Column('schedule', sa.String(length=120), nullable=True),
    sa.Column('sandbox', sa.String(length=12), nullable=False),
    sa.Column('network', sa.Boolean(), nullable=False),
    sa.Column('code_version', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.String(length=12), nullable=True),
    sa.Column('next_due_at', sa.DateTime(), nullable=True),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_plans_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_plans_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plans'))
    )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plans_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_plans_next_due_at'), ['next_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_plans_project_id'), ['project_id'], unique=False)

    op.create_table('runner_tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('team_id', sa.String(length=40), nullable=True),
    sa.Column('project_id', sa.String(length=40), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('lookup', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_runner_tokens_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_runner_tokens_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_runner_tokens_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runner_tokens')),
    sa.UniqueConstraint('lookup', name=op.f('uq_runner_tokens_lookup'))
    )
    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runner_tokens_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_runner_tokens_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_runner_tokens_team_id'), ['team_id'], unique=False)

    op.create_table('run_logs',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_logs_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'offset', name=op.f('pk_run_logs'))
    )
    op.create_table('schedule_fires',
    sa.Column('plan_id', sa.String(length=40), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_schedule_fires_plan_id_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('plan_id', 'due_at', name=op.f('pk_schedule_fires'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('process_started_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('finished_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('exit_code', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('runner_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('blocked_reason', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('pending_signals', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('lease_token', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('run_env', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('git_ref', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('log_size', sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_plan_id_status'), ['plan_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_status_queued_at'), ['status', 'queued_at'], unique=False)

    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('execution_budget_seconds', sa.BigInteger(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_column('execution_budget_seconds')

    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_status_queued_at'))
        batch_op.drop_index(batch_op.f('ix_runs_plan_id_status'))
        batch_op.drop_column('log_size')
        batch_op.drop_column('git_ref')
        batch_op.drop_column('run_env')
        batch_op.drop_column('attempt')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_token')
        batch_op.drop_column('pending_signals')
        batch_op.drop_column('cancel_requested_at')
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('blocked_reason')
        batch_op.drop_column('runner_id')
        batch_op.drop_column('exit_code')
        batch_op.drop_column('finished_at')
        batch_op.drop_column('process_started_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('queued_at')
        batch_op.drop_column('plan_id')

    op.drop_table('schedule_fires')
    op.drop_table('run_logs')
    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runner_tokens_team_id'))
        batch_op.drop_index(batch_op.f('ix_runner_tokens_project_id'))
        batch_op.drop_index(batch_op.f('ix_runner_tokens_created_by'))

    op.drop_table('runner_tokens')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plans_project_id'))
        batch_op.drop_index(batch_op.f('ix_plans_next_due_at'))
        batch_op.drop_index(batch_op.f('ix_plans_created_by'))

    op.drop_table('plans')
