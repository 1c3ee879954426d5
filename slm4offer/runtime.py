"""Where models run and how quietly: the device a setting names, CPU threads, and Hugging Face's
progress bars.

Neither changes a result's value (provenance records each machine's numerics), so the cache
keys leave them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers.utils import logging as hf_logging

from slm4offer.errors import InvalidValue


@contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Turn transformers' save/load bars off (notebooks), restoring the previous setting after."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def resolve_device(name: str) -> torch.device:
    """'auto' is a CUDA GPU when there is one, else the CPU; 'cpu', 'cuda' or 'cuda:N' as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidValue(f"device={name!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        raise InvalidValue(f"device={name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue(f"device={name!r}: torch sees no CUDA GPU on this machine (use auto or cpu)")
    return device


def set_threads(threads: int) -> None:
    """`threads` CPU threads for torch (0: leave torch's default, which torchrun sets to 1 per process)."""
    if threads:
        torch.set_num_threads(threads)
