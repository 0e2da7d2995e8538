"""Feature extraction: the model registry (no torch), the torch networks, the extractor with
micro-batching, and embedders (in-process or a remote extract function)."""
