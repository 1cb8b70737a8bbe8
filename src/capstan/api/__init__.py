"""Plumbing shared by every `/api` router: errors as problem+json, auth, pagination."""
