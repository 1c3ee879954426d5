"""Loss curves from the Trainer's log history: one row per epoch, train and validation parts."""

from __future__ import annotations

import pandas as pd


def epoch_table(log_history: list[dict]) -> pd.DataFrame:
    """Per epoch: the training means (`train_epoch_*`) and validation values (`eval_*`) of the
    loss and its parts (CE, InfoNCE), as logged at each epoch's evaluation."""
    rows = [{"epoch": int(round(log["epoch"])),
             **{k: v for k, v in log.items() if k.startswith(("train_epoch_", "eval_"))
                and not k.endswith(("runtime", "per_second"))}}
            for log in log_history if "eval_loss" in log]
    return pd.DataFrame(rows).set_index("epoch")
