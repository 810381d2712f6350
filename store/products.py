"""Products seen in events, and the picks made from them (cross-sell, new arrivals, best sellers).

The caller owns the transaction (``async with sessions.begin() as s``); see ``store.repo``
for how concurrent writers are kept apart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import insert_for
from store.models import Product, utcnow


@dataclass
class Seen:
    """Products seen in events, to be written at once: per SKU the latest of each attribute
    (name, price, category, url, image) and the quantities ordered, summed."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    ordered: Counter[str] = field(default_factory=Counter)

    def add(self, lines: list[dict[str, Any]], *, ordered: bool = False) -> None:
        """Lines of a cart or an order; a line without a SKU or a name is not a product."""
        for line in lines:
            sku = line.get("sku")
            if not sku or not line.get("name"):
                continue
            values: dict[str, Any] = {"name": line["name"]}
            for attr in ("category", "url", "image_url"):
                if line.get(attr):
                    values[attr] = line[attr]
            if line.get("price") is not None:
                values["price"] = Decimal(str(line["price"]))
            self.values.setdefault(str(sku), {}).update(values)
            self.ordered[str(sku)] += int(line.get("quantity", 1)) if ordered else 0

    async def write(self, session: AsyncSession) -> None:
        """One INSERT ... ON CONFLICT DO UPDATE per product, so two events about a new
        product at the same moment cannot collide, and concurrent orders never lose a
        count. Products are written in SKU order: two transactions lock shared rows in the
        same order (no deadlock)."""
        insert = insert_for(session)
        for sku in sorted(self.values):
            values, count = self.values[sku], self.ordered[sku]
            stmt = insert(Product).values(
                sku=sku, **values, times_ordered=count, first_seen_at=utcnow(), updated_at=utcnow()
            )
            changed = {k: stmt.excluded[k] for k in values}
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[Product.sku],
                    set_={
                        **changed,
                        "times_ordered": Product.times_ordered + count,
                        "updated_at": utcnow(),
                    },
                )
            )


async def upsert_products(
    session: AsyncSession, *, lines: list[dict[str, Any]], ordered: bool = False
) -> None:
    """Keep the catalogue of products seen in events; count what is ordered (``Seen``)."""
    seen = Seen()
    seen.add(lines, ordered=ordered)
    await seen.write(session)


async def get_product(session: AsyncSession, *, sku: str) -> Product | None:
    return await session.get(Product, sku)


async def popular_in_category(
    session: AsyncSession, *, category: str | None, exclude: set[str], limit: int = 3
) -> list[Product]:
    """Cross-sell and accessory picks: the most ordered products of the category."""
    if not category:
        return []
    query = (
        select(Product)
        .where(Product.category == category, Product.sku.not_in(exclude or {""}))
        .order_by(Product.times_ordered.desc(), Product.sku)
        .limit(limit)
    )
    return list(await session.scalars(query))


async def picks(session: AsyncSession, *, kind: str, limit: int = 4) -> list[Product]:
    """Shop-wide picks: "new_arrivals" (first seen last) or "best_sellers" (most ordered)."""
    order = (
        (Product.first_seen_at.desc(),)
        if kind == "new_arrivals"
        else (Product.times_ordered.desc(), Product.sku)
    )
    return list(await session.scalars(select(Product).order_by(*order).limit(limit)))
