from __future__ import annotations

import pytest

from tuning_helpers import toy_plan


@pytest.fixture
def plan():
    return toy_plan()


@pytest.fixture
def store(tmp_path):
    from slagen.db import TuningStore

    with TuningStore(f"sqlite:///{tmp_path / 'tuning.db'}") as opened:
        yield opened
