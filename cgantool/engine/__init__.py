"""The training engine: build a model from a RunConfig, run the loop."""
