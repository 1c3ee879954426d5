"""The paper's loss: L = lam * InfoNCE + (1 - lam) * CE, computed with no wasted passes.

Per batch of B (persona, accepted offer) examples with N hard negatives in all:
- the encoder runs once per persona (B rows);
- the decoder runs once over B positives + N negatives, each candidate attending to the
  encoder states of its own persona (one batched pass);
- CE reads the positives' rows of that same pass, so the positive is decoded once for both
  losses; only those rows go through the LM head.

InfoNCE scores each persona against every candidate in the batch (its positive, its own and
other personas' hard negatives, other examples' positives). A candidate that is an offer this
persona accepted, other than the positive itself, is masked out: it is not a negative.

On several processes the batch is the global one: personas and candidates are gathered from
every process (`slm4offer.distributed`), and each loss is scaled so that the mean over
processes, which DDP's gradient averaging and the Trainer's logging take, is the one-process
loss of the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from slm4offer.config import Config
from slm4offer.model import distributed
from slm4offer.model.offer_t5 import IGNORE_INDEX, OfferT5


@dataclass(frozen=True)
class LossTerm:
    """One part of the loss: its weight under a config, and the settings that give it weight 0 in
    the SFT baseline (none for CE, the baseline's own loss)."""

    weight: Callable[[Config], float]
    sft: dict = field(default_factory=dict)

    @property
    def contrastive(self) -> bool:
        return bool(self.sft)


# The registry, in the paper's order: L = lam * InfoNCE + (1 - lam) * CE. A new term is one
# entry here and its computation in `dual_loss`; the trainer sums and logs whatever parts it gets,
# and the SFT baseline switches every contrastive term off (`sft_settings`).
LOSS_TERMS: dict[str, LossTerm] = {
    "infonce": LossTerm(lambda cfg: cfg.lam, sft={"lam": 0.0}),
    "ce": LossTerm(lambda cfg: 1 - cfg.lam),
}


def loss_weights(cfg: Config) -> dict[str, float]:
    """Each term's weight under `cfg`."""
    return {name: term.weight(cfg) for name, term in LOSS_TERMS.items()}


def sft_settings() -> dict:
    """The config changes that make the SFT baseline: every contrastive term's weight 0."""
    return {k: v for term in LOSS_TERMS.values() for k, v in term.sft.items()}


def is_sft(cfg: Config) -> bool:
    """Whether `cfg` trains the SFT baseline: every contrastive term has weight 0."""
    weights = loss_weights(cfg)
    return all(weights[name] == 0 for name, term in LOSS_TERMS.items() if term.contrastive)


def weighted_sum(parts: dict, weights: dict[str, float]):
    """Sum of weight * part over the parts given (tensors or floats), in the registry's order."""
    total = None
    for name in LOSS_TERMS:
        if name in parts:
            term = weights[name] * parts[name]
            total = term if total is None else total + term
    return total


@dataclass
class LossParts:
    """The total loss and each part that was computed, unweighted (`terms`, logged by name)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


def info_nce(persona_emb: torch.Tensor, candidate_emb: torch.Tensor, valid: torch.Tensor,
             tau: float, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over personas of -log softmax(cos(p_i, c) / tau) at persona i's positive, over valid
    candidates. The positive of persona i is candidate `positives[i]` (default: candidate i), so
    `valid[i, positives[i]]` must be True.
    """
    p = F.normalize(persona_emb, dim=-1)
    c = F.normalize(candidate_emb, dim=-1)
    logits = (p @ c.T / tau).masked_fill(~valid, float("-inf"))
    return F.cross_entropy(logits, torch.arange(p.size(0), device=p.device) if positives is None else positives)


def candidate_mask(owner: torch.Tensor, keys: torch.Tensor, accepted_keys: torch.Tensor,
                   mode: str, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Which candidates count for which persona: (B, C) booleans.

    `owner[c]`: the persona row candidate c belongs to; `keys[c]`: its offer's integer id;
    `accepted_keys[i]`: offers persona i accepted (-1 padded); `positives[i]`: persona i's
    positive (default: candidate i). Mode 'hard' keeps only a persona's own candidates;
    'hard+in_batch' and 'in_batch' keep all (dual_loss leaves out hard negatives for 'in_batch').
    """
    b = accepted_keys.size(0)
    rows = torch.arange(b, device=keys.device)
    valid = ~(keys[None, :, None] == accepted_keys[:, None, :]).any(-1)
    if mode == "hard":
        valid &= owner[None, :] == rows[:, None]
    valid[rows, rows if positives is None else positives] = True
    return valid


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy, as `T5ForConditionalGeneration` computes it."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def _pad_to(labels: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(labels, (0, length - labels.size(1)), value=IGNORE_INDEX)


def dual_loss(model: OfferT5, batch: dict, weights: dict[str, float], tau: float, mode: str = "hard+in_batch",
              every_term: bool = False) -> LossParts:
    """The weighted sum of the loss terms (`LOSS_TERMS`) for a batch from `training.OfferCollator`.

    A term of weight 0 is not computed unless `every_term` (e.g. to log InfoNCE for the SFT
    baseline on validation). The SFT baseline's loss is then exactly plain CE.
    """
    with_infonce = weights["infonce"] > 0 or every_term
    mask = batch["attention_mask"]
    encoder_states = model.encode(batch["input_ids"], mask)
    labels = batch["labels"]
    if not with_infonce:
        states = model.decode(encoder_states, mask, labels)
        ce = _token_share(ce_loss(model.lm_logits(states), labels), labels)
        return LossParts(loss=weighted_sum({"ce": ce}, weights), terms={"ce": ce})

    b = labels.size(0)
    negatives, negative_owner, negative_keys = (
        batch["negative_labels"], batch["negative_owner"], batch["negative_keys"])
    if mode == "in_batch":  # other rows' positives are the only negatives
        negatives, negative_owner, negative_keys = labels[:0], negative_owner[:0], negative_keys[:0]
    length = max(labels.size(1), negatives.size(1))
    candidates = torch.cat([_pad_to(labels, length), _pad_to(negatives, length)])
    owner = torch.cat([torch.arange(b, device=labels.device), negative_owner])
    states = model.decode(encoder_states[owner], mask[owner], candidates)

    ce = _token_share(ce_loss(model.lm_logits(states[:b, : labels.size(1)]), labels), labels)
    persona_emb = model.embed(encoder_states, mask)
    candidate_emb = model.embed(states, candidates != IGNORE_INDEX)
    keys = torch.cat([batch["offer_keys"], negative_keys])
    if distributed.world_size() > 1:
        infonce = _global_info_nce(persona_emb, candidate_emb, owner, keys, batch["accepted_keys"], mode, tau)
    else:
        valid = candidate_mask(owner, keys, batch["accepted_keys"], mode)
        infonce = info_nce(persona_emb, candidate_emb, valid, tau)
    terms = {"ce": ce, "infonce": infonce}
    return LossParts(loss=weighted_sum(terms, weights), terms=terms)


def _token_share(ce: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """This process's token-mean CE, weighted by its share of the global batch's tokens: the mean
    over processes is then the global batch's token-mean (one process: unchanged)."""
    n = distributed.world_size()
    if n == 1:
        return ce
    tokens = (labels != IGNORE_INDEX).sum()
    return ce * (tokens * n / distributed.all_sum(tokens))


def _global_info_nce(persona_emb: torch.Tensor, candidate_emb: torch.Tensor, owner: torch.Tensor,
                     keys: torch.Tensor, accepted_keys: torch.Tensor, mode: str, tau: float) -> torch.Tensor:
    """InfoNCE of the global batch, the same value on every process, its gradient scaled so that
    DDP's average over processes is the one-process gradient."""
    n = distributed.world_size()
    personas, persona_counts = distributed.gather_rows(persona_emb.float())
    candidates, candidate_counts = distributed.gather_rows(candidate_emb.float())
    persona_start = [sum(persona_counts[:r]) for r in range(n)]
    candidate_start = [sum(candidate_counts[:r]) for r in range(n)]
    global_owner, _ = distributed.gather_rows(owner + persona_start[distributed.rank()])
    global_keys, _ = distributed.gather_rows(keys)
    global_accepted, _ = distributed.gather_rows(accepted_keys, pad_value=-1)
    positives = torch.cat([torch.arange(count, device=keys.device) + start
                           for count, start in zip(persona_counts, candidate_start, strict=True)])
    valid = candidate_mask(global_owner, global_keys, global_accepted, mode, positives)
    return distributed.GradScale.apply(info_nce(personas, candidates, valid, tau, positives), float(n))
