"""The model: T5 (pretrained where reachable, else the same architecture from scratch) plus pooling.

`OfferT5` is `T5ForConditionalGeneration` with what the contrastive loss needs: a pooled persona
embedding from the encoder, a pooled offer embedding from the decoder states of the
teacher-forced offer, and an optional projection shared by both. Its extra settings live in the
T5 config, so `save_pretrained` / `from_pretrained` round-trip it like any HF model.

Where the weights come from is decided once, by `resolve_source`, and recorded everywhere:
"pretrained" (a local folder, or a hub id found in the local HF cache) or "scratch" (a fresh
T5 with a BPE tokenizer trained on the training split). The two are never mixed silently.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from slm4offer.config import Config
from slm4offer.errors import InvalidValue, MissingFile
from slm4offer.runtime import hf_progress_bars

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5: pad doubles as decoder start


@dataclass(frozen=True)
class ModelSource:
    """'pretrained' with the folder or hub id it loads from, or 'scratch' and why."""

    kind: str
    location: str
    reason: str

    def describe(self) -> str:
        return f"{self.kind} ({self.location})" if self.kind == "pretrained" else f"scratch ({self.reason})"


def resolve_source(cfg: Config) -> ModelSource:
    """Decide, before any training, where the weights come from; fail early on a bad path.

    A value that looks like a path ('/', '.', '~') must exist. A hub id is looked up in the
    local Hugging Face cache only: these machines cannot download weights, and a training run
    should never depend on the network by accident.
    """
    if cfg.init == "scratch":
        return ModelSource("scratch", "", "init='scratch'")
    name = cfg.pretrained_model
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or path.is_dir():
        if not path.is_dir():
            raise MissingFile(f"pretrained_model={name!r}: no such folder")
        if not (path / "config.json").is_file():
            raise MissingFile(f"pretrained_model={name!r}: folder has no config.json "
                              "(expected a checkpoint saved with save_pretrained)")
        return ModelSource("pretrained", str(path.resolve()), "local folder")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid repo id
        cached = None
    if isinstance(cached, str):
        return ModelSource("pretrained", name, "Hugging Face cache")
    if cfg.init == "pretrained":
        raise MissingFile(
            f"pretrained_model={name!r} is not in the local Hugging Face cache and is not a folder. "
            f"Download it where you have network (`hf download {name}`) or set init='scratch'.")
    return ModelSource("scratch", "", f"{name!r} not in the local Hugging Face cache")


def train_tokenizer(texts, vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer with T5's special ids (pad 0, eos 1, unk 2) that appends </s>.

    BPE rather than T5's Unigram: on templated offer text the Unigram trainer stopped far below
    the asked vocabulary and split common words into letters (3x longer sequences, measured).
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                        special_tokens=list(SPECIAL_TOKENS)))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def scratch_config(cfg: Config, vocab_size: int) -> T5Config:
    """T5 of the profile's size; T5-Small on the `paper` profile."""
    return T5Config(vocab_size=vocab_size, d_model=cfg.d_model, d_ff=cfg.d_ff, d_kv=cfg.d_kv,
                    num_layers=cfg.num_layers, num_decoder_layers=cfg.num_layers,
                    num_heads=cfg.num_heads, dropout_rate=cfg.dropout, pad_token_id=0,
                    eos_token_id=1, decoder_start_token_id=0)  # type: ignore[call-arg]  # a PretrainedConfig kwarg


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


def _init_extra_weights(model: OfferT5) -> None:
    """Projection init independent of checkpoint loading order (from_pretrained skips it)."""
    if model.projection is not None:
        nn.init.normal_(model.projection.weight, std=1 / math.sqrt(model.config.d_model))


def build_model(cfg: Config, source: ModelSource, tokenizer_texts=None
                ) -> tuple[OfferT5, PreTrainedTokenizerBase]:
    """A fresh model and tokenizer for training: pretrained weights or a seeded scratch init."""
    extra = {"offer_pooling": cfg.pooling, "offer_projection_dim": cfg.projection_dim}
    torch.manual_seed(cfg.train_seed)
    if source.kind == "pretrained":
        tokenizer = AutoTokenizer.from_pretrained(source.location, local_files_only=True)
        config = T5Config.from_pretrained(source.location, local_files_only=True)
        config.update(extra)
        if config.decoder_start_token_id is None:
            config.decoder_start_token_id = config.pad_token_id
        model = OfferT5.from_pretrained(source.location, config=config, local_files_only=True)
        _init_extra_weights(model)
    else:
        if tokenizer_texts is None:
            raise InvalidValue("a scratch model needs texts to train its tokenizer on")
        tokenizer = train_tokenizer(tokenizer_texts, cfg.vocab_size)
        config = scratch_config(cfg, len(tokenizer))
        config.update(extra)
        model = OfferT5(config)
        _init_extra_weights(model)
    model.generation_config.decoder_start_token_id = model.config.decoder_start_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def load_trained(path: str | Path) -> tuple[OfferT5, PreTrainedTokenizerBase]:
    """A model and tokenizer saved by training (a checkpoint folder or the final folder)."""
    path = Path(path)
    with hf_progress_bars(False):  # a bar per small local load is noise in notebooks
        model = OfferT5.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.eval()
    return model, tokenizer


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (the tied embedding counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
