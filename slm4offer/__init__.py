"""slm4offer: a reproducible, notebook-first implementation of SLM4Offer (arXiv 2508.15471).

The folders follow the pipeline: a core (config, cache keys, provenance, files, statistics, the
LLM client), then `data`, `model`, `judges`, `experiments` and `report`; README.md ("How the
package is laid out") lists the stage functions, where each caches and what each writes.
"""

from slm4offer.config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "__version__"]
