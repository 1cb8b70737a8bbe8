"""Gateway configuration: providers, deployments and aliases; `capstan apply`; the routing table.

Modules: `specs` (what a resource is), `plan` (pure planning and checks), `persist` and
`credentials` (the store and the vault), `service` (`GatewayConfig`), `apply` (YAML files),
`snapshot` (the in-memory `RoutingTable` the data plane reads), `api` (REST routes).
"""
