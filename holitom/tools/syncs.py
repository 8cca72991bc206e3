"""Counting the calls that make the host wait for the device (on CUDA), on any device.

On a GPU, these stall the CPU until the queued kernels finish: reading a value (`item`, `int(t)`,
`bool(t)`, `float(t)`, `tolist`), data-dependent shapes (`nonzero`, indexing with a boolean mask), copies to
the host (`cpu`, `numpy`) and tensors built from host data (`torch.tensor(...)`, `torch.as_tensor(...)`). (A
`.to(device)` is not counted: on a CPU-only run every device is the CPU, so it cannot be told apart.) Counting the
calls works on CPU too, so tests can hold the count of a prefill down without a GPU (on CUDA,
`torch.cuda.set_sync_debug_mode("warn")` reports the real ones).

    with count_host_syncs() as syncs:
        model(...)
    print(syncs.total, syncs.by_call)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_SYNCING = {"__int__", "__bool__", "__float__", "__index__", "item", "tolist", "nonzero", "cpu", "numpy", "tensor", "as_tensor"}


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class SyncCounter(TorchFunctionMode):
    """Counts sync-forcing torch calls made while active (`by_call`: name → count)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_call: Counter[str] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _SYNCING:
            self.by_call[name] += 1
        elif name in ("__getitem__", "__setitem__") and _bool_index(args):
            self.by_call[f"{name}[bool mask]"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_call.values())


@contextmanager
def count_host_syncs() -> Iterator[SyncCounter]:
    counter = SyncCounter()
    with counter:
        yield counter
