"""Test and demo support shipped with Capstan: the upstream simulator."""
