"""Which epoch a training run keeps: the best on a validation criterion fixed before any test
number is looked at, the same for every method.

The criterion is the learned judge's expected acceptance of the model's greedy offers for the
validation personas, an offer not in the catalogue counting as a reject (0): the acceptance
table's expected acceptance, on validation personas instead of test ones, with the judge that
needs no simulated customer (so your own data has it too). After each epoch the Trainer logs it
as `eval_expected_acceptance`, keeps the best checkpoint (`metric_for_best_model`,
`load_best_model_at_end`) and stops after `early_stopping_patience` epochs without a gain.
"""

from __future__ import annotations

import numpy as np
from transformers import PreTrainedTokenizerBase

from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.judges import make_judge
from slm4offer.model.inference import generate_offers
from slm4offer.model.offer_t5 import OfferT5

CRITERION = "expected_acceptance"  # logged as eval_expected_acceptance
ABOUT = ("learned judge's expected acceptance of the greedy offers for the validation personas, "
         "an offer not in the catalogue counting as 0")


class ValidationCriterion:
    """`criterion(model, tokenizer)`: the selection score of a model in training, higher is better."""

    def __init__(self, cfg: Config, progress: bool = False):
        self.cfg = cfg
        self.personas = list(build_dataset(cfg, progress=progress)["validation"])
        self.judge = make_judge(cfg, "learned", progress=progress)

    def __call__(self, model: OfferT5, tokenizer: PreTrainedTokenizerBase) -> float:
        cfg = self.cfg
        offers = [o[0] for o in generate_offers(model, tokenizer, [p["persona"] for p in self.personas],
                                                max_new_tokens=cfg.max_offer_tokens,
                                                batch_size=cfg.generation_batch_size,
                                                max_persona_tokens=cfg.max_persona_tokens)]
        decisions = self.judge(self.personas, offers)
        return float(np.mean([d.probability or 0.0 for d in decisions]))


def selected_epoch(log_history: list[dict], best_step: int | None) -> dict:
    """What selection kept, from a run's log: the criterion per epoch, the best epoch and value."""
    key = f"eval_{CRITERION}"
    epochs = [{"epoch": round(x["epoch"], 3), "step": x["step"], CRITERION: x[key]} for x in log_history if key in x]
    best = next((e for e in epochs if e["step"] == best_step), None)
    return {"criterion": ABOUT, "per_epoch": epochs, "best_epoch": best and best["epoch"],
            "best_step": best_step, "best_value": best and best[CRITERION],
            "epochs_run": epochs[-1]["epoch"] if epochs else 0}
