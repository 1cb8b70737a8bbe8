"""The model catalog shipped with Capstan: models, capabilities and list prices."""

from capstan.gateway.catalog.catalog import Catalog, CatalogModel, default_catalog, parse_catalog

__all__ = ["Catalog", "CatalogModel", "default_catalog", "parse_catalog"]
