"""`OfferT5`: T5 that also embeds personas and offers into one space, for the contrastive loss,
reranking and catalogue ranking.

This module imports only torch and transformers: exported models carry a copy of it, so that
`AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)` loads them with their
projection head where slm4offer is not installed.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

IGNORE_INDEX = -100  # label padding, as transformers' cross-entropy expects


def offer_labels(tokenizer, offers: list[str], max_length: int) -> torch.Tensor:
    """Offers as teacher-forced decoder labels: token ids, padding as IGNORE_INDEX."""
    enc = tokenizer(offers, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    return enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)


def _signature_with_run(function) -> inspect.Signature:
    """`function`'s signature with a keyword-only `run` before its trailing **kwargs."""
    sig = inspect.signature(function)
    *params, var_keyword = sig.parameters.values()
    assert var_keyword.kind == inspect.Parameter.VAR_KEYWORD, "T5's forward ends in **kwargs"
    run = inspect.Parameter("run", inspect.Parameter.KEYWORD_ONLY, default=None)
    return sig.replace(parameters=[*params, run, var_keyword])


class LaneDropout(nn.Dropout):
    """`nn.Dropout` with a mask 3x cheaper to draw on a CPU, where `bernoulli_` (one random number
    per element) took ~25% of a default training step (`make bench`).

    Each 64-bit random word masks three elements, one per 16-bit lane (the top lane is left out:
    `random_` draws 63 bits). So the rate is quantised to 1/65536 (0.1 -> 0.100006), and kept
    values are scaled by 1 / (1 - that rate), which keeps the expectation exact. On other devices
    the fused kernel of `F.dropout` is used.
    """

    LANES, LEVELS = 3, 1 << 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return super().forward(x)
        dropped = round(self.p * self.LEVELS)
        n = x.numel()
        words = torch.empty(-(-n // self.LANES), dtype=torch.int64, device=x.device).random_()
        lanes = words.view(torch.int16).view(-1, 4)[:, : self.LANES].reshape(-1)[:n].view(x.shape)
        keep = (lanes >= dropped - self.LEVELS // 2).to(x.dtype)
        return x * keep.mul_(self.LEVELS / (self.LEVELS - dropped))


class OfferT5(T5ForConditionalGeneration):
    """T5 that also embeds personas (encoder) and offers (decoder) into one space.

    Settings `offer_pooling` ('mean' | 'eos') and `offer_projection_dim` (0 = none) are stored in
    the T5 config, so they travel with every checkpoint.
    """

    def __init__(self, config: T5Config):
        super().__init__(config)
        for module in list(self.modules()):
            for name, child in module.named_children():
                if type(child) is nn.Dropout:
                    setattr(module, name, LaneDropout(child.p))
        dim = getattr(config, "offer_projection_dim", 0)
        self.projection = nn.Linear(config.d_model, dim, bias=False) if dim else None

    @property
    def pooling(self) -> str:
        return getattr(self.config, "offer_pooling", "mean")

    def embed(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool token states (B, L, d) over `mask` (B, L) and project: (B, D)."""
        mask = mask.to(states.dtype)
        if self.pooling == "mean":
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:  # 'eos': the last unmasked position, which has seen the whole sequence
            last = (mask.sum(1).long() - 1).clamp(min=0)
            pooled = states[torch.arange(states.size(0), device=states.device), last]
        return self.projection(pooled) if self.projection is not None else pooled

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def decode(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
        """Final decoder states of the teacher-forced `labels` (-100 = padding): (N, T, d)."""
        decoder_input_ids = self._shift_right(labels)
        return self.decoder(input_ids=decoder_input_ids, encoder_hidden_states=encoder_states,
                            encoder_attention_mask=encoder_mask).last_hidden_state

    def forward(self, *args, run=None, **kwargs):
        """T5's forward; with `run`, `run(self)` instead.

        A loss built from several parts of the model (encode, decode, embed) must still be one
        `forward` call: under DDP that is what synchronises gradients across processes, and
        under mixed precision what runs in autocast.
        """
        return super().forward(*args, **kwargs) if run is None else run(self)

    # generate() and Trainer read forward's signature to decide which inputs to pass: keep T5's
    forward.__signature__ = _signature_with_run(T5ForConditionalGeneration.forward)  # type: ignore[attr-defined]

    def lm_logits(self, decoder_states: torch.Tensor) -> torch.Tensor:
        """The LM head exactly as `T5ForConditionalGeneration.forward` applies it."""
        if self.config.scale_decoder_outputs:
            decoder_states = decoder_states * (self.model_dim ** -0.5)
        return self.lm_head(decoder_states)

    @property
    def similarity_trained(self) -> bool:
        """Whether a contrastive term trained the embedding space: False for an SFT model, whose
        similarities come from an untrained projection and mean nothing (training records it)."""
        return bool(getattr(self.config, "offer_similarity_trained", True))

    def similarity(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each persona (B, L) with its offer (`labels`, B x T, -100 = padding).

        The offer is teacher-forced through the decoder while attending to its persona, as the
        contrastive loss embeds its candidates; reranking and catalogue ranking use this.
        """
        states = self.encode(input_ids, attention_mask)
        persona = self.embed(states, attention_mask)
        offer = self.embed(self.decode(states, attention_mask, labels), labels != IGNORE_INDEX)
        return nn.functional.cosine_similarity(persona, offer, dim=-1)

    def similarity_matrix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """(B, C): each of B personas against each of C offers (`labels`, C x T), every offer
        decoded under the persona it is scored for, as in `similarity`; the encoder runs once per persona."""
        states = self.encode(input_ids, attention_mask)
        persona = self.embed(states, attention_mask)
        n, c = input_ids.size(0), labels.size(0)
        mask = attention_mask.repeat_interleave(c, 0)
        every = labels.repeat(n, 1)
        offer = self.embed(self.decode(states.repeat_interleave(c, 0), mask, every), every != IGNORE_INDEX)
        return nn.functional.cosine_similarity(persona.unsqueeze(1), offer.view(n, c, -1), dim=-1)

    @torch.inference_mode()
    def score_offers(self, tokenizer, persona: str, offers: list[str], max_length: int = 512) -> list[float]:
        """The similarity of one persona with each of `offers`, to rank a catalogue."""
        self.eval()
        enc = tokenizer([persona], return_tensors="pt", truncation=True, max_length=max_length).to(self.device)
        labels = offer_labels(tokenizer, offers, max_length).to(self.device)
        return self.similarity_matrix(enc["input_ids"], enc["attention_mask"], labels)[0].tolist()
