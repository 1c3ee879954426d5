"""The numbers the paper reports (arXiv 2508.15471), kept in one place and shown beside ours.

These are the only typed numbers in the results: they are the paper's, not ours.
"""

ACCEPTANCE = {"sft": 0.80, "contrastive": 0.94}  # offer acceptance, LLM-judged (abstract, §6)
JUDGE_AGREEMENT = 0.94    # LLM judge vs human annotators (§6)
JUDGE_SAMPLES = 200       # samples the human annotators labelled
JUDGE_CHI2_P = "< 0.001"  # chi-square test of judge vs human labels, as reported
UNDERFIT_LAYERS = {"sft": 14, "contrastive": 11}  # layers with alpha > 6, WeightWatcher (Table 1)
STABLE_EPOCH = 30  # loss curves settle by about this epoch (Figure 6)
