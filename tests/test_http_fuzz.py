"""Property: whatever body arrives at the ingestion endpoints, the answer is never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starter.http import create_app
from testkit.data import add_customer
from testkit.stack import WRITE_KEY

HEADERS = {"Authorization": f"Bearer {WRITE_KEY}"}
KNOWN = "fuzz-known-customer"
EVENTS = [
    "Signed Up",
    "Product Added",
    "Product Removed",
    "Checkout Started",
    "Order Completed",
    "Product Viewed",
    "Email Opened",
    "Email Link Clicked",
    "Unsubscribed",
    "Email Bounced",
    "Email Marked as Spam",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "EUR", "not-an-email", "a@example.com", "https://x.example/p", "hard"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
product = st.fixed_dictionaries(
    {},
    optional={
        "sku": scalars,
        "product_id": scalars,
        "name": scalars,
        "price": scalars,
        "quantity": scalars,
        "url": scalars,
    },
)
properties = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "products": st.lists(product, max_size=3) | json_values,
            "order_id": scalars,
            "total": scalars,
            "currency": scalars,
            "type": scalars,
            "journey": scalars,
            "email_id": scalars,
            **{k: scalars for k in ("sku", "name", "price", "quantity")},
        },
    ),
)
calls = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["identify", "track", "page"]) | scalars,
        "userId": st.sampled_from([KNOWN, "fuzz-new"]) | scalars,
        "event": st.sampled_from(EVENTS) | scalars,
        "properties": properties,
        "traits": st.fixed_dictionaries(
            {}, optional={"email": scalars, "firstName": scalars, "timezone": scalars}
        )
        | json_values,
        "messageId": scalars,
        "timestamp": scalars | st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00"]),
    },
)
bodies = st.one_of(
    calls, json_values, st.fixed_dictionaries({"batch": st.lists(calls, max_size=4)})
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(["/v1/identify", "/v1/track", "/v1/batch"]), body=bodies)
async def test_random_bodies_never_get_a_5xx(stack, path: str, body: object) -> None:
    await add_customer(stack, KNOWN)  # so that some calls get past "unknown customer"
    app = create_app(stack.settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        # json.dumps writes NaN/Infinity as bare words, as a careless client might.
        raw = json.dumps(body).encode()
        headers = {**HEADERS, "Content-Type": "application/json"}
        answer = await http.post(path, content=raw, headers=headers)
    assert answer.status_code < 500, (path, body, answer.status_code, answer.text)
