"""InferenceOps: run AI inference as a governed, efficient internal service."""
__version__ = "0.1.0"
