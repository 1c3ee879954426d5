"""Experiments: each runs systems, judges and statistics and returns frames; it writes nothing
(`slm4offer.report` writes the tables and figures)."""
