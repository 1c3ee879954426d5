"""One smoke training run, recording every file and folder each process writes.

Run by tests/test_distributed.py under `torchrun --nproc-per-node 2`:
python tests/ddp_train.py WRITES_PREFIX KIND[,KIND ...] [config overrides as key=value ...]
Process r appends each path it writes (slm4offer.files.write_text / atomic_dir) to
WRITES_PREFIX.r; the main process prints each model's folder on a line of its own, "model: PATH".
"""

import os
import sys
from contextlib import contextmanager

from slm4offer import files

RECORD = f"{sys.argv[1]}.{os.environ.get('RANK', '0')}"
_write_text, _atomic_dir = files.write_text, files.atomic_dir


def _record(path) -> None:
    with open(RECORD, "a", encoding="utf-8") as fh:
        fh.write(f"{path}\n")


def write_text(path, text):
    _record(path)
    return _write_text(path, text)


@contextmanager
def atomic_dir(path):
    _record(path)
    with _atomic_dir(path) as tmp:
        yield tmp


# before the modules that import them by name
files.write_text, files.atomic_dir = write_text, atomic_dir

from slm4offer.config import load_config  # noqa: E402
from slm4offer.model.training import train  # noqa: E402

if __name__ == "__main__":
    kinds, overrides = sys.argv[2].split(","), dict(a.split("=", 1) for a in sys.argv[3:])
    typed = {k: float(v) if "." in v else int(v) if v.isdigit() else v for k, v in overrides.items()}
    for kind in kinds:
        result = train(load_config("smoke", init="scratch", **typed), kind, progress=False)
        if os.environ.get("RANK", "0") == "0":
            print(f"model: {result.path.parent}", flush=True)
