"""Negotiated prices: what an organization pays where it differs from the catalog's list price.

An override is for a model (every deployment serving it) or one deployment, and takes effect at
a moment (now by default): entering a new price never changes what earlier calls cost, and one
entered late can be dated back (then `capstan prices recompute` re-prices the calls since). A
change is audited and bumps the config version, so every gateway prices with it within a second.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.clock import as_utc, utcnow
from capstan.errors import Conflict, InvalidInput
from capstan.finops.money import price_from_decimal
from capstan.finops.prices import Price, PriceBook, PriceRecord, TargetKind
from capstan.gateway.catalog import Catalog, default_catalog
from capstan.identity.changes import ChangeRecorder
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.store.engine import Store
from capstan.store.schema import PriceOverride

RATES = ("input", "output", "cached_input", "cache_write", "reasoning")
UNIT_PRICES = ("per_image", "per_audio_second")


@dataclass(frozen=True, slots=True)
class PriceRequest:
    target_kind: str
    target: str
    # USD per million tokens (RATES) or per unit (UNIT_PRICES), as decimal strings.
    prices: Mapping[str, str]
    effective_from: datetime | None = None
    note: str | None = None


def record_of(row: PriceOverride) -> PriceRecord:
    price = Price(
        input=row.input,
        output=row.output,
        cached_input=row.cached_input,
        cache_write=row.cache_write,
        reasoning=row.reasoning,
        per_image=row.per_image,
        per_audio_second=row.per_audio_second,
        effective_from=as_utc(row.effective_from),
        source="override",
    )
    kind: TargetKind = "deployment" if row.target_kind == "deployment" else "model"
    return PriceRecord(kind, row.target, price)


def load_price_records(session: Session, org_id: uuid.UUID) -> list[PriceRecord]:
    rows = session.scalars(select(PriceOverride).where(PriceOverride.org_id == org_id)).all()
    return [record_of(row) for row in rows]


class PriceOverrides:
    def __init__(
        self, store: Store, changes: ChangeRecorder, catalog: Catalog | None = None
    ) -> None:
        self.store = store
        self.changes = changes
        self.catalog = catalog if catalog is not None else default_catalog()

    def set(self, principal: Principal, request: PriceRequest) -> PriceOverride:
        principal.require(Permission.PRICES_WRITE)
        if request.target_kind not in ("model", "deployment"):
            raise InvalidInput("a price is for a model or a deployment", field="target_kind")
        if not request.target or len(request.target) > 200:
            raise InvalidInput("name the model or deployment (1-200 characters)", field="target")
        rates = _micros(request.prices)
        if "input" not in rates or "output" not in rates:
            raise InvalidInput("a price needs at least input and output", field="prices")
        effective = as_utc(request.effective_from) if request.effective_from else utcnow()
        with self.store.write() as session:
            row = PriceOverride(
                org_id=principal.scope.org_id,
                target_kind=request.target_kind,
                target=request.target,
                effective_from=effective,
                note=request.note,
                created_by=principal.key_id,
                **rates,
            )
            session.add(row)
            try:
                self.changes.record(session, principal, "price.set", row, before=None)
            except IntegrityError as exc:
                raise Conflict(
                    f"{request.target} already has a price taking effect at "
                    f"{effective.isoformat()}",
                    field="effective_from",
                ) from exc
            return row

    def book(self, principal: Principal) -> PriceBook:
        """The organization's price book as the gateway uses it."""
        principal.require(Permission.SPEND_READ)
        with self.store.read() as session:
            records = load_price_records(session, principal.scope.org_id)
        return PriceBook(self.catalog, records)


def _micros(prices: Mapping[str, str]) -> dict[str, int]:
    """USD decimal strings to integer micro-dollars (per million tokens, or per unit)."""
    unknown = set(prices) - set(RATES) - set(UNIT_PRICES)
    if unknown:
        raise InvalidInput(
            f"unknown price {sorted(unknown)[0]!r}; known: {', '.join(RATES + UNIT_PRICES)}",
            field="prices",
        )
    found: dict[str, int] = {}
    for name, text in prices.items():
        try:
            found[name] = price_from_decimal(Decimal(str(text)))
        except (InvalidOperation, ValueError) as exc:
            raise InvalidInput(
                f"price {name} must be a non-negative number of USD with at most 6 decimals",
                field="prices",
            ) from exc
    return found
