"""The one Alembic migration tree."""

from __future__ import annotations
