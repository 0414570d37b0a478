"""Evaluation: metrics on features, feature extractors (Inception with an offline story), evaluate()."""
