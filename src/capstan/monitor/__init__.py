"""Monitoring: what models did, measured against what they should have done."""
