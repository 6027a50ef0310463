"""Shared test setup: no test touches the real home (data and config go to a tmp dir)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("olane-home")
    monkeypatch.setenv("OLANE_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("OLANE_CONSOLE_CONFIG", str(base / "config.json"))
    yield
