"""Governance: the audit chain and secrets at rest (bias, explanations, PII land here later)."""
