"""The model: T5 (pretrained where reachable, else the same architecture from scratch) plus pooling.

`OfferT5` (in `offer_t5`, which needs only torch and transformers) is `T5ForConditionalGeneration`
with what the contrastive loss needs: a pooled persona embedding from the encoder, a pooled offer
embedding from the decoder states of the teacher-forced offer, and an optional projection shared
by both. Its extra settings live in the T5 config, so `save_pretrained` / `from_pretrained`
round-trip it like any HF model.

Where the weights come from is decided once, by `resolve_source`, and recorded everywhere:
"pretrained" (a local folder, or a hub id found in the local HF cache) or "scratch" (a fresh
T5 with a BPE tokenizer trained on the training split). The two are never mixed silently.
"""

from __future__ import annotations

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
)

from slm4offer.config import Config
from slm4offer.errors import InvalidValue, MissingFile
from slm4offer.model.offer_t5 import OfferT5
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
