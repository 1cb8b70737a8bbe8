"""Serving registry models in process: loaders per flavor, the Open Inference Protocol v2."""
