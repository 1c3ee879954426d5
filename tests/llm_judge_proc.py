"""The LLM judge over `n` items of `fault_server.items`, in a process of its own.

The soak tests kill it with SIGKILL part-way, or run two at once on one cache. Usage:
python tests/llm_judge_proc.py BASE_URL CACHE_DIR N OUT.json (key from OPENAI_API_KEY).
"""

import os
import sys

from fault_server import items, llm_judge

from slm4offer.files import write_json

if __name__ == "__main__":
    base_url, cache_dir, n, out = sys.argv[1:5]
    judge = llm_judge(base_url, cache_dir, api_key=os.environ["OPENAI_API_KEY"], concurrency=4, timeout_s=0.3,
                      backoff_s=0.001)
    decisions = judge(*items(int(n)))
    write_json(out, [{"accept": d.accept, "error": d.error} for d in decisions])
