"""Submissions are identified by their statement and signing key, not their envelope's bytes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: the database alone cannot give older rows their statement's digest; the
    # collector fills it in at start from each row's kept envelope (store.fill_payload_digests).
    # NULLs are distinct in a unique index (SQLite and PostgreSQL alike), so older rows stay.
    op.add_column("submissions", sa.Column("payload_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ux_submissions_payload_key", "submissions", ["payload_sha256", "key_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_submissions_payload_key", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:  # SQLite rebuilds the table
        batch.drop_column("payload_sha256")
