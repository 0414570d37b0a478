"""Data sources, the uint8 cache, and on-device batches."""

from cgantool.data.sources import ImageDataset, cache_dir, load_dataset, parse_source

__all__ = ["ImageDataset", "cache_dir", "load_dataset", "parse_source"]
