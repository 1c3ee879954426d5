"""Where the data come from: the synthetic world and its campaign, the dataset built from it, an
LLM generator, or your own campaign log."""
