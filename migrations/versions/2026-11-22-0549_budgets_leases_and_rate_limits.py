"""budgets leases and rate limits

Revision ID: 4d34ad3bac2b
Revises: 8981225bc78f
Create Date: 2026-11-22 05:49:24.555008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '4d34ad3bac2b'
down_revision: str | None = '8981225bc78f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _lock_timeout() -> None:
    # Fail fast rather than queue behind live traffic while holding an exclusive lock.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")


def upgrade() -> None:
    _lock_timeout()
    
    op.create_table('budget_leases',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('budget_ids', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('amount_micros', sa.BigInteger(), nullable=False),
    sa.Column('api_key_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('team_id', sa.String(length=40), nullable=True),
    sa.Column('endpoint', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('output_cap', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_budget_leases'))
    )
    with op.batch_alter_table('budget_leases', schema=None) as batch_op:
        batch_op.create_index('ix_budget_leases_expires_at', ['expires_at'], unique=False)

    op.create_table('budgets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('scope_id', sa.String(length=40), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('limit_micros', sa.BigInteger(), nullable=False),
    sa.Column('soft_limit_micros', sa.BigInteger(), nullable=True),
    sa.Column('spent_micros', sa.BigInteger(), nullable=False),
    sa.Column('reserved_micros', sa.BigInteger(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'lifetime')", name=op.f('ck_budgets_period')),
    sa.CheckConstraint("scope IN ('key', 'user', 'team')", name=op.f('ck_budgets_scope')),
    sa.CheckConstraint('limit_micros >= 0 AND spent_micros >= 0 AND reserved_micros >= 0', name=op.f('ck_budgets_money')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budgets')),
    sa.UniqueConstraint('scope', 'scope_id', 'period', name='uq_budgets_scope_period')
    )
    op.create_table('rate_limits',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('scope_id', sa.String(length=40), nullable=False),
    sa.Column('rpm', sa.Integer(), nullable=True),
    sa.Column('tpm', sa.Integer(), nullable=True),
    sa.Column('concurrent', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("scope IN ('key', 'user', 'team')", name=op.f('ck_rate_limits_scope')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_limits')),
    sa.UniqueConstraint('scope', 'scope_id', name='uq_rate_limits_scope')
    )
    


def downgrade() -> None:
    _lock_timeout()
    
    op.drop_table('rate_limits')
    op.drop_table('budgets')
    with op.batch_alter_table('budget_leases', schema=None) as batch_op:
        batch_op.drop_index('ix_budget_leases_expires_at')

    op.drop_table('budget_leases')
    
