"""Training on several processes (`torchrun`, `accelerate launch`): who writes, and one global batch.

Under a multi-process launch, `config.batch_size` stays the global batch: each of N processes
takes batch_size / N examples of it, and the contrastive loss draws its in-batch offers from
every process's examples (their token ids are gathered), so each persona is scored against the
candidates it would get in one process.
Only the main process writes the dataset, the models and the logs; the others wait for it and
read what it wrote. With one process every function here is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (it builds and writes); the others run it after,
    and find what it wrote (a cached dataset, a saved initial model)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over processes (a copy; the input is unchanged)."""
    values = values.detach().clone()
    if world_size() > 1:
        dist.all_reduce(values)
    return values


def gather_rows(local: torch.Tensor, pad_value: float = 0) -> tuple[torch.Tensor, list[int]]:
    """Every process's rows of `local`, concatenated in rank order, and how many each had.

    Rows may differ in number (and trailing dims in width, padded with `pad_value`). The
    local rows keep their gradient; the other processes' rows are constants here.
    """
    n = world_size()
    if n == 1:
        return local, [local.size(0)]
    shape = torch.tensor(local.shape, dtype=torch.long)
    shapes = [torch.zeros_like(shape) for _ in range(n)]
    dist.all_gather(shapes, shape)
    widest = torch.stack(shapes).max(0).values.tolist()
    padded = local.detach()
    pads = [p for size, top in zip(reversed(padded.shape), reversed(widest), strict=True) for p in (0, top - size)]
    padded = torch.nn.functional.pad(padded, pads, value=pad_value)
    parts = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(parts, padded)
    counts = [int(s[0]) for s in shapes]
    me = rank()
    own = torch.nn.functional.pad(local, pads[:-2] + [0, 0], value=pad_value) if local.dim() > 1 else local
    rows = [own if r == me else part[:counts[r]] for r, part in enumerate(parts)]
    return torch.cat(rows), counts

