"""Capstan: a self-hosted control plane for every AI model a company runs."""

__version__ = "0.1.0"
