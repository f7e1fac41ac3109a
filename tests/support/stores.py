"""A whole in-process service on each store in turn (SQLite, then PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.harness import Service, start_service


@pytest.fixture
async def store_service(make_settings, store_url: str) -> AsyncIterator[Service]:
    """The service on a new SQLite file, then on the run's PostgreSQL database."""
    async with start_service(make_settings(f'[store]\nurl = "{store_url}"\n')) as svc:
        yield svc
