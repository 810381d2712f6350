"""What a template sees: the customer, the cart, the coupon, the shop and its links, and the
products and orders a step's context names. Reads the store; decides nothing."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import SendStepInput
from core.links import Links
from journeys.shop import Shop
from store import orders, products
from store.models import Cart, Coupon, Customer, Product


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return Decimal("0.00")


def _cart_context(cart: Cart | None) -> dict[str, Any]:
    if cart is None:
        return {"lines": [], "total": Decimal("0.00"), "currency": "EUR", "checkout_url": None}
    lines = []
    for item in cart.lines.get("items", []):
        price = _money(item.get("price", 0))
        qty = int(item.get("quantity", 1))
        lines.append(
            {
                "sku": item.get("sku", ""),
                "name": item.get("name", ""),
                "price": price,
                "quantity": qty,
                "line_total": price * qty,
                "url": item.get("url"),
                "image_url": item.get("image_url"),
            }
        )
    total = sum((line["line_total"] for line in lines), Decimal("0.00"))
    return {
        "lines": lines,
        "total": total,
        "currency": cart.currency,
        "checkout_url": cart.checkout_url,
    }


def base_context(
    req: SendStepInput,
    customer: Customer,
    cart: Cart | None,
    coupon: Coupon | None,
    *,
    shop: Shop,
    links: Links,
) -> dict[str, Any]:
    """What every template sees: the customer, the cart, the coupon, the shop and its links.

    ``first_name`` is empty when unknown: templates and subjects say what they say without
    it (``{% if first_name %}``), never "Hi there". Shop links are under ``shop_url`` (the
    storefront); a checkout link from the shop's events wins over the storefront's /cart.
    """
    shop_ctx = shop.context()
    cart_ctx = _cart_context(cart)
    if not cart_ctx["checkout_url"]:
        cart_ctx["checkout_url"] = f"{shop_ctx['url']}/cart"
    first_name = (customer.first_name or "").strip()
    return {
        "customer": {
            "id": customer.id,
            "first_name": first_name,
            "last_name": customer.last_name or "",
            "email": customer.email,
        },
        "first_name": first_name,
        "cart": cart_ctx,
        "coupon": (
            {
                "code": coupon.code,
                "percent_off": coupon.percent_off,
                "expires_at": coupon.expires_at.strftime("%Y-%m-%d"),
            }
            if coupon is not None
            else None
        ),
        "coupon_code": coupon.code if coupon is not None else None,
        "shop": shop_ctx,
        "shop_url": shop_ctx["url"],
        "unsubscribe_url": links.unsubscribe(customer_id=customer.id, journey=req.journey),
        "stay_url": links.stay(customer_id=customer.id, send_key=req.idempotency_key),
        # "Report this email" in the footer of marketing email (a transactional one has none).
        "report_url": (
            None
            if req.transactional
            else links.report(customer_id=customer.id, send_key=req.idempotency_key)
        ),
        "journey": req.journey,
        "step": req.step,
    }


def _product(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": p.name,
        "category": p.category,
        "price": p.price,
        "url": p.url,
        "image_url": p.image_url,
    }


async def extra_context(s: AsyncSession, req: SendStepInput, customer: Customer) -> dict[str, Any]:
    """Products and orders the template may show; always present so templates can test them."""
    extra: dict[str, Any] = {
        "product": None,
        "accessories": [],
        "order": None,
        "cross_sell": [],
        "birthday_known": bool(customer.attributes.get("birthday")),
        "picks": [],
        "tracking_url": None,
        **{k: v for k, v in req.context.items() if k not in ("product_sku", "order_id")},
    }
    picks = req.context.get("picks")
    if picks in ("new_arrivals", "best_sellers"):
        found = await products.picks(s, kind=str(picks))
        extra["picks"] = [_product(p) for p in found]
    sku = req.context.get("product_sku")
    if sku:
        product = await products.get_product(s, sku=str(sku))
        if product is not None:
            extra["product"] = _product(product)
            picks = await products.popular_in_category(
                s, category=product.category, exclude={product.sku}
            )
            extra["accessories"] = [_product(p) for p in picks]
    order_id = req.context.get("order_id")
    if order_id:
        order = await orders.get_order(s, customer_id=customer.id, order_id=str(order_id))
        if order is not None:
            lines = order.lines.get("items", [])
            extra["order"] = {
                "id": order.id,
                "total": order.total,
                "currency": order.currency,
                "lines": lines,
            }
            category = next((line["category"] for line in lines if line.get("category")), None)
            bought = {str(line.get("sku")) for line in lines}
            picks = await products.popular_in_category(s, category=category, exclude=bought)
            extra["cross_sell"] = [_product(p) for p in picks]
    return extra
