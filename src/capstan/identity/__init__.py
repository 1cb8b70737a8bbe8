"""Who may do what: the organization tree, users, API keys, roles and scopes."""
