"""slm4offer: a reproducible, notebook-first implementation of SLM4Offer (arXiv 2508.15471)."""

from slm4offer.config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "__version__"]
