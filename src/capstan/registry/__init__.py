"""The model registry: registered models, immutable versions, artifacts, lineage, profiles."""
