"""One configuration object for every stage, its profiles, its hashes, and the output paths.

Settings flow only through `Config`. A profile (`smoke`, `default`, `paper`) is a small set of
overrides on the dataclass defaults; a YAML file, a notebook's parameters cell or CLI flags
override single fields on top. Unknown keys and wrong types raise at once, naming the key.

Cached artifacts live under `artifacts/<profile>/`, named by `cache.stage_hash`.
Only this module and `cli.py` read the environment.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slm4offer.cache import stage_hash
from slm4offer.errors import InvalidValue, MissingFile, UnknownKey, WrongType

PROFILE_ENV = "SLM4OFFER_PROFILE"
MAIN_DOMAIN = "finance"  # the paper's: its results keep the plain names (results/acceptance.*)
ROOT_ENV = "SLM4OFFER_ROOT"


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class Config:
    """Every setting of the pipeline. Field help doubles as CLI help (`slm4offer --help`)."""

    profile: str = _f("default", "Named profile: smoke (CI, seconds), default (2-core CPU), "
                      "paper (T5-Small scale, GPU).")
    data: str = _f("", "Your own dataset instead of the synthetic world: the folder that `slm4offer "
                   "validate-data ... --out DIR` writes (a relative path is relative to the project folder). "
                   "Every stage reads it; the simulated customer and the best-offer ceiling exist only for "
                   "synthetic worlds.")
    domain: str = _f(MAIN_DOMAIN, "Built-in domain name (finance, ecommerce) or path to a domain YAML.")
    seed: int = _f(0, "Seed of the synthetic world, the campaign and the splits.")
    generator: str = _f("world", "Where personas and offer texts come from: 'world' (templates) "
                        "or 'openai' (any OpenAI-compatible endpoint, see llm_* fields).")
    # --- synthetic world and campaign -------------------------------------------------------
    n_personas: int = _f(4000, "Personas to synthesise before dropping those who accepted nothing.")
    catalog_size: int = _f(120, "Offers in the catalog, sampled from the allowed slot combinations "
                           "(0 = all of them).")
    offers_per_round: int = _f(4, "Offers the historical campaign shows a persona per round.")
    max_rounds: int = _f(3, "Campaign rounds; a persona accepting nothing after these is dropped.")
    val_fraction: float = _f(0.1, "Share of personas in the validation split.")
    test_fraction: float = _f(0.1, "Share of personas in the test split.")
    # --- optional LLM generator (OpenAI-compatible; the key comes only from OPENAI_API_KEY) ---
    llm_base_url: str = _f("", "Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1; "
                           "empty = the openai client's default (OPENAI_BASE_URL or OpenAI).")
    llm_model: str = _f("gpt-4o-mini", "Model name sent to the endpoint.")
    llm_temperature: float = _f(0.8, "Sampling temperature for generation (judges use 0).")
    llm_concurrency: int = _f(4, "Requests in flight at once.")
    llm_max_attempts: int = _f(4, "Attempts per item (HTTP errors and malformed JSON) before it is "
                               "recorded as an error.")
    llm_timeout_s: float = _f(60.0, "Timeout of one request, seconds.")
    llm_backoff_s: float = _f(1.0, "First retry delay, seconds; doubles each attempt (plus jitter).")
    llm_max_error_share: float = _f(0.2, "LLM generator and judge stop once more than this share of items "
                                    "end in an error after their retries (1 = never stop; answers stay cached).")
    # --- model: pretrained T5 when reachable, else the same architecture from scratch ------
    init: str = _f("auto", "Model weights: 'auto' (pretrained_model if it is a local folder or in "
                   "the Hugging Face cache, else scratch), 'pretrained' (fail if unreachable), 'scratch'.")
    pretrained_model: str = _f("t5-small", "Hub id (looked up in the local HF cache only) or a local "
                               "folder with a T5 checkpoint and tokenizer.")
    vocab_size: int = _f(2000, "Scratch only: vocabulary of the tokenizer trained on the training split.")
    d_model: int = _f(128, "Scratch only: hidden size (T5-Small: 512).")
    d_ff: int = _f(512, "Scratch only: feed-forward size (T5-Small: 2048).")
    num_layers: int = _f(2, "Scratch only: encoder layers; the decoder has as many (T5-Small: 6).")
    num_heads: int = _f(4, "Scratch only: attention heads (T5-Small: 8).")
    d_kv: int = _f(32, "Scratch only: size of one attention head (T5-Small: 64).")
    dropout: float = _f(0.1, "Dropout rate of the T5 blocks.")
    max_persona_tokens: int = _f(96, "Persona texts are cut to this many tokens.")
    max_offer_tokens: int = _f(64, "Offer texts are cut to this many tokens; also the generation limit.")
    # --- loss: L = lam * InfoNCE + (1 - lam) * CE ---------------------------------------------
    lam: float = _f(0.5, "Weight of InfoNCE in the loss (paper: 0.5). The SFT baseline uses 0.")
    tau: float = _f(0.1, "Temperature of the cosine similarities in InfoNCE.")
    hard_negatives: int = _f(3, "Rejected offers of the persona used as hard negatives per example "
                             "(fewer when a persona has fewer; those slots are masked).")
    negatives: str = _f("hard+in_batch", "Contrastive candidates besides the positive: 'hard+in_batch', "
                        "'hard' (own rejected offers only) or 'in_batch' (other examples' offers only).")
    in_batch_negatives: int = _f(3, "Other examples' offers each persona is scored against ('hard+in_batch', "
                                 "'in_batch'): the positives of the next examples of the batch, each decoded "
                                 "under that persona as inference decodes it; bounds the loss's cost.")
    pooling: str = _f("mean", "How token states become one embedding: 'mean' (masked mean) or 'eos' "
                      "(the state at the end-of-sequence token).")
    projection_dim: int = _f(128, "Linear projection shared by persona and offer embeddings before "
                             "the cosine (0 = none).")
    # --- training -------------------------------------------------------------------------------
    train_seed: int = _f(0, "Seed of model initialisation, negative sampling, shuffling and dropout.")
    epochs: int = _f(6, "Training epochs (the paper's curves settle by about 30 on T5-Small).")
    batch_size: int = _f(32, "Examples (persona, accepted offer) per optimiser step; on N processes "
                         "(torchrun) each takes batch_size/N and the loss sees the whole batch.")
    grad_accum: int = _f(1, "Gradient accumulation steps.")
    learning_rate: float = _f(1e-3, "Peak AdamW learning rate (linear decay after warm-up); replaced by the tuned "
                              "one where a tuning search chose it for this setup (see tuning).")
    tuning: str = _f("auto", "auto: train with the learning rate `slm4offer tune` chose for this exact setup (kind, "
                     "data, every training setting but learning rate and seed) when results/ has one, else "
                     "learning_rate; off: always learning_rate.")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.05, "Share of the training steps spent warming up the learning rate.")
    early_stopping_patience: int = _f(2, "Epochs without a gain in the validation criterion (the learned judge's "
                                      "expected acceptance of greedy offers) before training stops; the best "
                                      "epoch is kept either way (0 = train every epoch).")
    logs_per_epoch: int = _f(10, "Training-loss log lines per epoch (the loss-curve figure reads them).")
    bf16: bool = _f(False, "Train in bfloat16 mixed precision (autocast; weights and optimiser stay fp32). "
                    "For GPUs with bf16 (Ampere or newer); T5 overflows in fp16, which is not offered.")
    report_to: str = _f("none", "Also send training logs to: none, tensorboard (written to the model "
                        "folder's runs/, watch with `tensorboard --logdir artifacts`), or any "
                        "integration transformers knows (wandb, mlflow, ...), comma-separated.")
    device: str = _f("auto", "Where models train and run (generation, similarity, learned judge): auto "
                     "(a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.")
    threads: int = _f(0, "CPU threads of this process (torch.set_num_threads); 0 = torch's default: the "
                      "machine's cores, 1 per process under torchrun. On a busy machine, fewer threads than "
                      "cores can be many times faster.")
    # --- generation -----------------------------------------------------------------------------
    num_beams: int = _f(1, "Beam width for generation (1 = greedy).")
    rerank_candidates: int = _f(0, "Generate this many candidates by beam search and keep the one "
                                "closest to the persona in the learned embedding space (0 = off).")
    generation_batch_size: int = _f(64, "Personas per generation batch.")
    # --- judges and evaluation ------------------------------------------------------------------
    judges: str = _f("simulated,learned", "Judges of the acceptance table, comma-separated: simulated "
                     "(the world's customer), learned (offline, trained on the campaign log), llm "
                     "(needs judge_base_url or OPENAI_BASE_URL).")
    accept_threshold: float = _f(0.5, "Simulated and learned judges accept when P(accept) reaches this.")
    judge_model: str = _f("gpt-4o-mini", "LLM judge: model name sent to the endpoint (temperature 0).")
    judge_base_url: str = _f("", "LLM judge: base URL of an OpenAI-compatible API (Azure OpenAI, OpenAI, "
                             "vLLM, Ollama); empty = OPENAI_BASE_URL or OpenAI. Key: OPENAI_API_KEY only.")
    judge_prompt: str = _f("", "LLM judge: file with the prompt ({domain}, {persona}, {offer} are filled "
                           "in); empty = the built-in prompt.")
    eval_seeds: int = _f(5, "Training seeds per model in the acceptance table: train_seed, train_seed+1, ...")
    study_seeds: int = _f(3, "Training seeds per model in the opt-in studies (ablations, a new domain, model "
                          "sizes): fewer than the acceptance table's, so that breadth fits hours on 2 cores.")
    judge_samples: int = _f(200, "(persona, generated offer) pairs drawn to validate a judge (paper: 200).")
    baseline_candidates: int = _f(4, "Beam candidates the reranking baselines of the acceptance table "
                                  "(sft+rerank, contrastive+rerank) choose from.")

    def __post_init__(self) -> None:
        _check_types(self)
        if self.data:
            path = (repo_root() / Path(self.data).expanduser()).resolve()  # relative: to the project folder
            if not (path / "dataset_dict.json").is_file():
                raise InvalidValue(f"data={self.data!r} ({path}): not a dataset folder (write one with `slm4offer "
                                   "validate-data INTERACTIONS --offers OFFERS --out DIR`)")
            # kept relative to the project when inside it, so no machine's path reaches results/
            inside = path.is_relative_to(repo_root())
            object.__setattr__(self, "data", path.relative_to(repo_root()).as_posix() if inside else str(path))
        if self.profile not in PROFILES:
            raise InvalidValue(f"profile={self.profile!r}: unknown profile (known: {', '.join(PROFILES)})")
        if self.generator not in ("world", "openai"):
            raise InvalidValue(f"generator={self.generator!r}: must be 'world' or 'openai'")
        if self.catalog_size < 0:
            raise InvalidValue(f"catalog_size={self.catalog_size}: must be >= 0 (0 = every offer)")
        for name in ("n_personas", "offers_per_round", "max_rounds",
                     "llm_concurrency", "llm_max_attempts"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise InvalidValue(f"{name}={getattr(self, name)}: must be in (0, 0.5)")
        if self.llm_timeout_s <= 0 or self.llm_backoff_s < 0:
            raise InvalidValue("llm_timeout_s must be > 0 and llm_backoff_s >= 0")
        if not 0 <= self.llm_max_error_share <= 1:
            raise InvalidValue(f"llm_max_error_share={self.llm_max_error_share}: must be in [0, 1]")
        self._check_model_fields()
        self._check_judge_fields()

    def _check_model_fields(self) -> None:
        choices = {"init": ("auto", "pretrained", "scratch"), "pooling": ("mean", "eos"),
                   "negatives": ("hard+in_batch", "hard", "in_batch"), "tuning": ("auto", "off")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidValue(f"{name}={getattr(self, name)!r}: must be one of {', '.join(allowed)}")
        if not 0.0 <= self.lam <= 1.0:
            raise InvalidValue(f"lam={self.lam}: the InfoNCE weight must be in [0, 1] (0 = SFT only)")
        if not self.tau > 0:
            raise InvalidValue(f"tau={self.tau}: the temperature must be > 0")
        for name in ("vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "d_kv",
                     "max_persona_tokens", "max_offer_tokens", "epochs", "batch_size", "grad_accum",
                     "logs_per_epoch", "num_beams", "generation_batch_size"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("hard_negatives", "in_batch_negatives", "projection_dim", "rerank_candidates", "threads",
                     "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise InvalidValue(f"{name}={getattr(self, name)}: must be >= 0")
        if self.negatives != "in_batch" and self.hard_negatives == 0 and self.lam > 0:
            raise InvalidValue(f"negatives={self.negatives!r} needs hard_negatives >= 1 "
                               "(or use negatives='in_batch')")
        if self.negatives != "hard" and self.in_batch_negatives == 0 and self.lam > 0:
            raise InvalidValue(f"negatives={self.negatives!r} needs in_batch_negatives >= 1 "
                               "(or use negatives='hard')")
        if not 0 <= self.dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise InvalidValue("dropout and warmup_ratio must be in [0, 1)")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise InvalidValue("learning_rate must be > 0 and weight_decay >= 0")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda")):
            raise InvalidValue(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.rerank_candidates == 1:
            raise InvalidValue("rerank_candidates=1 has nothing to rerank: use 0 (off) or >= 2")

    def _check_judge_fields(self) -> None:
        if not self.judge_names:  # the names themselves are checked against the registry, slm4offer.judges
            raise InvalidValue(f"judges={self.judges!r}: give one or more judges, comma-separated")
        if not 0 < self.accept_threshold < 1:
            raise InvalidValue(f"accept_threshold={self.accept_threshold}: must be in (0, 1)")
        for name in ("eval_seeds", "study_seeds", "judge_samples"):
            if getattr(self, name) < 1:
                raise InvalidValue(f"{name}={getattr(self, name)}: must be >= 1")
        if self.baseline_candidates < 2:
            raise InvalidValue(f"baseline_candidates={self.baseline_candidates}: must be >= 2 (one candidate "
                               "leaves nothing to rerank)")

    def for_study(self, seeds: int | None = None) -> Config:
        """This config in an opt-in study: `seeds` training seeds per model, else `study_seeds`."""
        return dataclasses.replace(self, eval_seeds=seeds or self.study_seeds)

    @property
    def judge_names(self) -> list[str]:
        return [j.strip() for j in self.judges.split(",") if j.strip()]

    # --- paths ------------------------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        return repo_root() / "artifacts" / self.profile

    @property
    def dataset_dir(self) -> Path:
        if self.data:
            return repo_root() / self.data  # an absolute `data` stays as it is
        return self.artifacts_dir / f"dataset-{domain_name(self.domain)}-{stage_hash(self, 'dataset')}"

    @property
    def figures_dir(self) -> Path:
        """`figures/` for the default profile (committed); `figures/<profile>/` otherwise; with your
        own data, `data/<its folder name>/` below that, so it never overwrites the synthetic world's."""
        return _profile_dir("figures", self.profile, self.data)

    @property
    def results_dir(self) -> Path:
        return _profile_dir("results", self.profile, self.data)

    @property
    def llm_cache_dir(self) -> Path:
        """Shared by profiles: a cached reply is keyed by its whole request, not by profile."""
        return repo_root() / "artifacts" / "llm_cache"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """The settings every result depends on, grouped, then any other field that differs from
        the defaults: a notebook's first output says what ran without reading the profile table."""
        lines = [f"profile={self.profile}"]
        groups = SUMMARY_FIELDS if not self.data else {  # your own data: no world to describe
            "data": ("data",), **{k: v for k, v in SUMMARY_FIELDS.items() if k != "world"}}
        for group, names in groups.items():
            lines.append(f"{group}: " + " ".join(f"{n}={getattr(self, n)!r}" for n in names))
        shown = {n for names in SUMMARY_FIELDS.values() for n in names} | {"profile"}
        other = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                 if f.name not in shown and getattr(self, f.name) != f.default]
        if other:
            lines.append("other settings changed from the defaults: " + " ".join(other))
        return "\n".join(lines)


# What `Config.summary` always shows, by what it decides.
SUMMARY_FIELDS: dict[str, tuple[str, ...]] = {
    "world": ("data", "domain", "seed", "generator", "n_personas", "catalog_size"),
    "model": ("init", "pretrained_model", "d_model", "d_ff", "num_layers", "num_heads", "d_kv", "vocab_size"),
    "training": ("lam", "tau", "negatives", "hard_negatives", "in_batch_negatives", "epochs", "batch_size",
                 "learning_rate", "train_seed"),
    "evaluation": ("eval_seeds", "judges", "accept_threshold", "num_beams", "rerank_candidates",
                   "baseline_candidates"),
}

# Profiles override only what differs from the dataclass defaults (which are `default`).
PROFILES: dict[str, dict] = {
    "smoke": {"n_personas": 400, "catalog_size": 48, "vocab_size": 800, "d_model": 64, "d_ff": 128,
              "num_layers": 2, "num_heads": 2, "d_kv": 32, "epochs": 2, "batch_size": 16,
              "eval_seeds": 2, "study_seeds": 2, "judge_samples": 50},
    "default": {},
    "paper": {"n_personas": 12000, "catalog_size": 0, "vocab_size": 32000, "d_model": 512, "d_ff": 2048,
              "num_layers": 6, "num_heads": 8, "d_kv": 64, "epochs": 30, "learning_rate": 3e-4},
}


def load_config(profile: str | None = None, config_file: str | Path | None = None,
                **overrides) -> Config:
    """Build a `Config`: profile defaults, then a YAML file, then keyword overrides.

    `profile=None` reads $SLM4OFFER_PROFILE, else "default". Overrides equal to None are
    ignored, so a notebook can pass its parameters through unchanged.
    """
    profile = profile or os.environ.get(PROFILE_ENV) or "default"
    if profile not in PROFILES:
        raise InvalidValue(f"profile={profile!r}: unknown profile (known: {', '.join(PROFILES)})")
    values: dict = {"profile": profile, **PROFILES[profile]}
    if config_file is not None:
        values.update(_read_yaml_overrides(Path(config_file)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    _check_keys(values, source="override")
    return Config(**values)


def _read_yaml_overrides(path: Path) -> dict:
    if not path.is_file():
        raise MissingFile(f"{path}: config file not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidValue(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    _check_keys(data, source=str(path))
    return data


def _check_keys(values: dict, source: str) -> None:
    known = [f.name for f in dataclasses.fields(Config)]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UnknownKey(f"{source}: unknown config key {key!r}{extra}")


def _check_types(cfg: Config) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(cfg):
        value, expected = getattr(cfg, f.name), hints[f.name]
        allowed = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(cfg, f.name, float(value))  # 1 is a fine float
            continue
        if isinstance(value, bool) and bool not in allowed:
            raise WrongType(f"{f.name}={value!r}: expected {expected}, got bool")
        if not isinstance(value, tuple(a for a in allowed if a is not type(None))) and not (
            value is None and type(None) in allowed
        ):
            raise WrongType(f"{f.name}={value!r}: expected {expected}, got {type(value).__name__}")


def llm_api_key() -> str:
    """The endpoint's key, from $OPENAI_API_KEY only; never stored in a Config, hash or log.

    Local servers (vLLM, Ollama) take no key, but the openai client insists on one.
    """
    return os.environ.get("OPENAI_API_KEY") or "no-key-set"


def llm_endpoint_configured(base_url: str) -> bool:
    """Whether an LLM endpoint was chosen: a base URL (field or $OPENAI_BASE_URL) or an OpenAI key."""
    return bool(base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))


def dataset_label(cfg: Config) -> str:
    """What a caption calls the data: 'finance world' or 'your data (my_dataset)'."""
    return f"your data ({Path(cfg.data).name})" if cfg.data else f"{domain_name(cfg.domain)} world"


def data_name(cfg: Config) -> str:
    """What models and records are named after: your own data's folder name, else the world's domain."""
    return Path(cfg.data).name if cfg.data else domain_name(cfg.domain)


def result_name(cfg: Config, kind: str, with_domain: bool = False) -> str:
    """The stem of a result file, so that two worlds never write the same file: `kind`, then the
    domain (unless it is the paper's and `with_domain` is off), then the generator unless it is
    the template world ('acceptance', 'acceptance_ecommerce', 'data_card_finance_openai')."""
    domain = domain_name(cfg.domain)
    parts = [kind, *([domain] if with_domain or domain != MAIN_DOMAIN else []),
             *([cfg.generator] if cfg.generator != "world" else [])]
    return "_".join(parts)


def domain_name(domain: str) -> str:
    """'finance' for 'finance' or for a path like 'my/finance.yaml'."""
    return Path(domain).stem if domain.endswith((".yaml", ".yml")) else domain


def repo_root() -> Path:
    """The project folder: $SLM4OFFER_ROOT, else the nearest parent with slm4offer's pyproject."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and 'name = "slm4offer"' in pyproject.read_text():
            return candidate
    return here


def _profile_dir(kind: str, profile: str, data: str = "") -> Path:
    base = repo_root() / kind
    base = base if profile == "default" else base / profile
    return base / "data" / Path(data).name if data else base


def config_fields() -> list[dataclasses.Field]:
    """The fields, in declaration order, for `cli.py` to turn into flags."""
    return list(dataclasses.fields(Config))
