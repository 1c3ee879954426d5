"""The paper's loss: L = lam * InfoNCE + (1 - lam) * CE, scored as inference scores.

Per batch of B (persona, accepted offer) examples, each persona i is scored against its own
candidates only: its positive, its hard negatives (offers it rejected) and, as in-batch
negatives, the positives of the next `in_batch` examples of the batch. Every one of them is
decoded under persona i's encoder states, exactly as reranking and catalogue ranking decode an
offer for the persona they score it for (`OfferT5.similarity`): so a candidate's training score
is its inference score, and no candidate can be told apart by the persona it was decoded under.

- the encoder runs once per persona (B rows);
- the decoder runs once over all candidates (B positives + hard negatives + B * in_batch);
- CE reads the positives' rows of that same pass, so the positive is decoded once for both
  losses; only those rows go through the LM head.

A candidate that is an offer this persona accepted, other than the positive itself, or a repeat
of one of its earlier candidates, is masked out. InfoNCE runs persona -> offers only.

On several processes the batch is the global one: the in-batch offers are the next examples of
the global batch (their token ids are gathered, `slm4offer.distributed`), and each loss is scaled
so that the mean over processes, which DDP's gradient averaging and the Trainer's logging take,
is the one-process loss of the same global batch.
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
    """The total loss and each part that was computed, unweighted (`terms`, logged by name); with
    InfoNCE, each candidate's persona row (`owner`) and the embeddings it compared (detached)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    owner: torch.Tensor | None = None
    persona_emb: torch.Tensor | None = None
    candidate_emb: torch.Tensor | None = None

    @property
    def similarity(self) -> torch.Tensor | None:
        """Each candidate's cosine similarity with the persona it was scored for, computed on demand
        (training never needs it; it is what inference's scores are held to)."""
        if self.owner is None or self.persona_emb is None or self.candidate_emb is None:
            return None
        return F.cosine_similarity(self.persona_emb[self.owner], self.candidate_emb, dim=-1)


def info_nce(persona_emb: torch.Tensor, candidate_emb: torch.Tensor, valid: torch.Tensor,
             tau: float, reduction: str = "mean") -> torch.Tensor:
    """-log softmax(cos(p_i, c) / tau) at persona i's positive, over valid candidates, per persona
    (`reduction`: 'mean' or 'none'). The positive of persona i is candidate i, so `valid[i, i]`
    must be True.
    """
    p = F.normalize(persona_emb, dim=-1)
    c = F.normalize(candidate_emb, dim=-1)
    logits = (p @ c.T / tau).masked_fill(~valid, float("-inf"))
    return F.cross_entropy(logits, torch.arange(p.size(0), device=p.device), reduction=reduction)


def candidate_mask(owner: torch.Tensor, keys: torch.Tensor, accepted_keys: torch.Tensor) -> torch.Tensor:
    """Which candidates count for which persona: (B, C) booleans.

    `owner[c]`: the persona row candidate c is decoded under and scored for; `keys[c]`: its
    offer's integer id; `accepted_keys[i]`: offers persona i accepted (-1 padded). Persona i's
    positive is candidate i. A persona keeps its own candidates, less offers it accepted and
    repeats of an earlier candidate's offer; its positive always counts.
    """
    b = accepted_keys.size(0)
    rows = torch.arange(b, device=keys.device)
    valid = ~(keys[None, :, None] == accepted_keys[:, None, :]).any(-1)
    valid &= owner[None, :] == rows[:, None]
    repeat = ((owner[:, None] == owner[None, :]) & (keys[:, None] == keys[None, :])).tril(-1).any(1)
    valid &= ~repeat[None, :]
    valid[rows, rows] = True
    return valid


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy, as `T5ForConditionalGeneration` computes it."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def _pad_to(labels: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(labels, (0, length - labels.size(1)), value=IGNORE_INDEX)


def in_batch_offers(labels: torch.Tensor, keys: torch.Tensor,
                    in_batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each local example's in-batch negatives: the positives of the next `in_batch` examples of
    the global batch (cyclically, never its own). Returns (labels, owner row, offer key)."""
    everyone, counts = distributed.gather_rows(labels, pad_value=IGNORE_INDEX)
    every_key, _ = distributed.gather_rows(keys)
    total, start = sum(counts), sum(counts[:distributed.rank()])
    shifts = torch.arange(1, min(in_batch, total - 1) + 1, device=labels.device)
    rows = torch.arange(labels.size(0), device=labels.device)
    picked = ((rows[:, None] + start + shifts[None, :]) % total).reshape(-1)
    return everyone[picked], rows.repeat_interleave(shifts.numel()), every_key[picked]


def dual_loss(model: OfferT5, batch: dict, weights: dict[str, float], tau: float, mode: str = "hard+in_batch",
              in_batch: int = 3, every_term: bool = False) -> LossParts:
    """The weighted sum of the loss terms (`LOSS_TERMS`) for a batch from `training.OfferCollator`.

    `mode` picks the negatives ('hard+in_batch', 'hard', 'in_batch'); `in_batch` is how many other
    examples' offers each persona is scored against. A term of weight 0 is not computed unless
    `every_term` (e.g. to log InfoNCE for the SFT baseline on validation). The SFT baseline's loss
    is then exactly plain CE.
    """
    with_infonce = weights["infonce"] > 0 or every_term
    mask = batch["attention_mask"]
    encoder_states = model.encode(batch["input_ids"], mask)
    labels = batch["labels"]
    if not with_infonce:
        states = model.decode(encoder_states, mask, labels)
        ce = _global_share(ce_loss(model.lm_logits(states), labels), (labels != IGNORE_INDEX).sum())
        return LossParts(loss=weighted_sum({"ce": ce}, weights), terms={"ce": ce})

    b = labels.size(0)
    parts = [(labels, torch.arange(b, device=labels.device), batch["offer_keys"])]
    if mode != "in_batch":
        parts.append((batch["negative_labels"], batch["negative_owner"], batch["negative_keys"]))
    if mode != "hard":
        parts.append(in_batch_offers(labels, batch["offer_keys"], in_batch))
    length = max(p[0].size(1) for p in parts)
    candidates = torch.cat([_pad_to(p[0], length) for p in parts])
    owner, keys = torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])
    states = model.decode(encoder_states[owner], mask[owner], candidates)

    ce = _global_share(ce_loss(model.lm_logits(states[:b, : labels.size(1)]), labels), (labels != IGNORE_INDEX).sum())
    persona_emb = model.embed(encoder_states, mask)
    candidate_emb = model.embed(states, candidates != IGNORE_INDEX)
    valid = candidate_mask(owner, keys, batch["accepted_keys"])
    per_persona = info_nce(persona_emb, candidate_emb, valid, tau, reduction="none")
    infonce = _global_share(per_persona.mean(), torch.tensor(b, device=labels.device))
    terms = {"ce": ce, "infonce": infonce}
    return LossParts(loss=weighted_sum(terms, weights), terms=terms, owner=owner, persona_emb=persona_emb.detach(),
                     candidate_emb=candidate_emb.detach())


def _global_share(mean: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """This process's mean over `count` items, weighted by its share of the global batch's items:
    the mean over processes is then the global batch's mean (one process: unchanged)."""
    n = distributed.world_size()
    if n == 1:
        return mean
    return mean * (count * n / distributed.all_sum(count))
