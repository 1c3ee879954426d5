"""A synthetic campaign log of any size in the format `slm4offer validate-data` reads, to try the
tools at scale (the benchmark's 50 MB log, the memory test of the validator)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from slm4offer.data.userdata import INTERACTION_COLUMNS, OFFER_FILE_COLUMNS


def write_example_log(folder: str | Path, rows: int, offers: int = 200, shown_per_persona: int = 10,
                      seed: int = 0) -> tuple[Path, Path]:
    """A synthetic campaign log of `rows` interactions with one `age` attribute column.

    About 100 bytes of text per row, like a real export where every row repeats the persona.
    Returns (interactions.csv, offers.csv).
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "offers.csv"
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(OFFER_FILE_COLUMNS)
        out.writerows((f"o{j:04d}", f"Offer {j}: a card with {j % 7 + 1}% cashback, in the app.")
                      for j in range(offers))
    log = folder / "interactions.csv"
    with log.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow([*INTERACTION_COLUMNS, "age"])
        for start in range(0, rows, shown_per_persona):
            pid, age = f"c{start // shown_per_persona:07d}", int(rng.integers(18, 86))
            persona = f"{age}-year-old customer {pid}, earning ${int(rng.integers(20, 200))},000, likes travel."
            shown = rng.choice(offers, size=min(shown_per_persona, rows - start), replace=False)
            for k, j in enumerate(shown):
                out.writerow([pid, persona, f"o{j:04d}", int(k == 0 or rng.random() < 0.2), age])
    return log, catalog
