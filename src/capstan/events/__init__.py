"""Request events: one per data-plane request, recorded, stored and read back.

`EventPipeline` gets them from the request path into the store without losing any
(`capstan.events.pipeline`, `.spool`, `.store`); `.queries` and `.api` read them back.
"""

from capstan.events.pipeline import EventPipeline

__all__ = ["EventPipeline"]
