"""Fixtures shared by the store-backed contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openbatch.config import normalize_database_url
from openbatch.store.sql import SqlStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A fresh store, migrated to the newest schema, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'openbatch.db'}"
    else:
        url = normalize_database_url(request.getfixturevalue("postgres_url"))
    store = SqlStore(url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()
