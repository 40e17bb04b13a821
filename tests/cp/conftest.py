"""A gloo process group of one rank in this process, for the CP tests that need no other ranks (module scope:
each test module starts and ends its own, so a module can also check the uninitialised case)."""

from __future__ import annotations

import pytest
import torch.distributed as dist


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    path = tmp_path_factory.mktemp("cp_group") / "rendezvous"
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()
