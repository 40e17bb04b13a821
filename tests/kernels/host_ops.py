"""What a launcher does on the host between its kernel launches: `HostOps` records every aten op but
allocations (what would run on the GPU between launches); `NoLaunch` stands in for a @triton.jit kernel and
counts its launches without running it. Shared by the families' no-host-arithmetic tests (issue 17 item 5)."""

from torch.utils._python_dispatch import TorchDispatchMode

ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias",
               "lift_fresh"}


class HostOps(TorchDispatchMode):
    """Records every torch op but allocations."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in ALLOCATIONS:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class NoLaunch:
    """Stands in for a @triton.jit kernel (held as `.kernel`, as launch.meta expects): counts launches, runs
    nothing."""

    def __init__(self, kernel):
        self.kernel, self.count = kernel, 0

    def __getitem__(self, grid):
        self.count += 1
        return lambda *args, **kwargs: None
