"""Every journey step's template and subject, rendered before a customer could see them.

``check_templates`` loads every ``journeys/*.toml`` and renders each step's template and
subject, each A/B variant's, and the templates a config names besides its steps (e.g.
nurture's care templates with the care step's subject), against sample contexts: everything
present, then each optional field absent (first name, cart lines, checkout link, product
links and images, coupon where the step has none configured, product, order, picks, tracking
link). It reports, naming the
file: an unknown template, a variable the context does not have, a link that is neither under
the storefront nor one the shop's events carried nor the unsubscribe/keep-writing link, and
an email without the shop's name, postal address or unsubscribe link, or with a greeting that
reads wrong without a name ("Hi there", "Hi ,").

It lives in activities/ beside the renderer it drives (journeys/ imports nothing of ours).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from activities.context import base_context
from activities.render import Renderer, TemplateBroken, TemplateMissing
from core.contracts import SendStepInput
from core.links import Links
from journeys.config import (
    NOT_JOURNEYS,
    JourneyConfig,
    JourneyConfigError,
    StepConfig,
    load_journey,
)
from journeys.shop import Shop
from store.models import Cart, Coupon, Customer

# Three hosts that cannot be confused: a shop link must be under STOREFRONT; the
# unsubscribe and keep-writing links are under PUBLIC; EVENTS stands for what the shop's
# events carry (a checkout link, product pages and images).
STOREFRONT = "https://storefront.check"
PUBLIC = "https://links.check"
EVENTS = "https://events.check"
SAMPLE_SHOP = Shop(
    url=STOREFRONT,
    name="Sample Shop",
    postal_address="Sample Shop Ltd\n1 Sample Street\n10115 Berlin, Germany",
    support_email="help@storefront.check",
    logo_url=f"{STOREFRONT}/logo.png",
    brand_color="#1f6f5c",
)
# Each variant drops one optional thing from the full sample ("" drops nothing).
VARIANTS = (
    "",
    "first_name",
    "cart_lines",
    "checkout_url",
    "product_links",
    "coupon",
    "product",
    "order",
    "picks",
    "tracking_url",
)
# What reads wrong: a greeting or subject built around an empty or placeholder name, a
# value Python printed as None, template syntax that was not rendered.
ARTEFACTS = (
    (re.compile(r"\bthere\s*[!,?.]", re.I), 'a "there" standing in for a name'),
    (re.compile(r"\b(?:Hi|Hello|Dear|Welcome|birthday|you)\s+[,!?:]", re.I), "an empty name"),
    (re.compile(r"^\s*[,!?:]", re.M), "a line starting with punctuation"),
    (re.compile(r"\s,"), "a space before a comma"),
    (re.compile(r",\s*[!?.:]"), "a comma before other punctuation"),
    (re.compile(r"\bNone\b"), "None printed"),
    (re.compile(r"\{\{|\}\}|\{%|%\}"), "template syntax left in"),
)
_URL = re.compile(r"""https?://[^\s<>"')]+""")
_TRAILING = ".,;:!?"


@dataclass(frozen=True)
class Problem:
    file: str  # the TOML or template a person has to open
    where: str  # the step, template and sample variant
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


@dataclass(frozen=True)
class _Sample:
    journey: str
    step: StepConfig
    template: str
    drop: str  # the sample's variant: which optional thing is absent
    subject: str
    arm: str | None = None  # the step's A/B variant whose subject and template these are


def check_templates(journeys_dir: Path) -> list[Problem]:
    """Every problem found in every journey of ``journeys_dir`` (empty: all good)."""
    renderer = Renderer(journeys_dir / "templates", old_subjects=False)
    problems: list[Problem] = []
    for path in sorted(journeys_dir.glob("*.toml")):
        if path.stem in NOT_JOURNEYS:
            continue
        try:
            config = load_any(path.stem, journeys_dir)
        except JourneyConfigError as exc:
            problems.append(Problem(str(path), "load", str(exc)))
            continue
        for sample in _samples(config):
            problems += _check_one(renderer, path, sample)
    return problems


def load_any(name: str, journeys_dir: Path) -> JourneyConfig:
    """The journey as the most specific config model that accepts it (models forbid unknown
    keys, so a journey's extra keys pick its model)."""
    error: JourneyConfigError | None = None
    for model in _config_models(JourneyConfig):
        try:
            return load_journey(name, journeys_dir, model)
        except JourneyConfigError as exc:
            error = exc  # the last one tried is the base model's: it names the bad key
    assert error is not None
    raise error


def _config_models(base: type[JourneyConfig]) -> list[type[JourneyConfig]]:
    """``base``'s subclasses, most derived first, then ``base``."""
    found: list[type[JourneyConfig]] = []
    for sub in base.__subclasses__():
        found += _config_models(sub)
    return [*found, base]


def _samples(config: JourneyConfig) -> Iterator[_Sample]:
    extra = [template for _, template in config.extra_templates()]
    for step in config.steps:
        if step.channel == "sms":
            continue  # texts: activities/sms/compose.py check_sms_templates
        # The step's own subject and template, and each A/B variant's (core.rules.ab_variant)
        arms = [(None, step.subject, step.template)] + [
            (v.name, v.subject, v.template or step.template) for v in step.variants
        ]
        for arm, subject, main in arms:
            templates = [main] + (extra if main in extra else [])
            for template in dict.fromkeys(templates):
                for drop in VARIANTS:
                    if drop == "coupon" and step.coupon is not None:
                        continue  # a step with a coupon configured always has one
                    yield _Sample(config.name, step, template, drop, subject, arm)


def _check_one(renderer: Renderer, path: Path, sample: _Sample) -> list[Problem]:
    arm = f"variant {sample.arm!r}, " if sample.arm else ""
    where = f"step {sample.step.name!r}, {arm}template {sample.template!r}, " + (
        f"without {sample.drop}" if sample.drop else "full sample"
    )
    context = sample_context(sample.journey, sample.step, drop=sample.drop)
    try:
        rendered = renderer.render(
            template=sample.template, subject=sample.subject, context=context
        )
    except TemplateMissing as exc:
        return [Problem(str(path), where, str(exc))]
    except TemplateBroken as exc:
        return [Problem(_template_file(path, sample.template), where, str(exc))]
    problems = [
        Problem(str(path), where, f"subject {rendered.subject!r}: {reason}")
        for reason in _artefacts(rendered.subject)
    ]
    if not rendered.subject:
        problems.append(Problem(str(path), where, "the subject is empty"))
    for part, body in (("html", rendered.html), ("txt", rendered.text)):
        file = _template_file(path, sample.template, part)
        problems += [Problem(file, where, reason) for reason in _body_problems(body, context)]
    return problems


def _template_file(path: Path, template: str, part: str = "html") -> str:
    return str(path.parent / "templates" / f"{template}.{part}.j2")


def _artefacts(text: str) -> list[str]:
    return [f"{why}: {m.group(0)!r}" for rx, why in ARTEFACTS for m in [rx.search(text)] if m]


def _body_problems(body: str, context: dict[str, Any]) -> list[str]:
    shop = context["shop"]
    problems = _artefacts(re.sub(r"<[^>]+>", "", body))
    for what, value in (
        ("the shop's name", shop["name"]),
        ("the shop's postal address", shop["postal_address"]),
        ("the unsubscribe link", context["unsubscribe_url"]),
    ):
        if value not in body.replace("&amp;", "&"):
            problems.append(f"{what} is missing")
    own = {context["unsubscribe_url"], context["stay_url"], context.get("report_url")}
    for url in sorted(set(links_in(body))):
        if url in own or url == STOREFRONT or url.startswith((f"{STOREFRONT}/", f"{EVENTS}/")):
            continue
        problems.append(f"link {url} is not under the storefront {STOREFRONT} (shop_url)")
    return problems


def links_in(body: str) -> list[str]:
    """Every http(s) URL in an HTML or text body, HTML entities and trailing punctuation off."""
    return [m.group(0).replace("&amp;", "&").rstrip(_TRAILING) for m in _URL.finditer(body)]


def sample_context(journey: str, step: StepConfig, *, drop: str = "") -> dict[str, Any]:
    """What the send activity would give ``step``'s template, for a sample customer, with
    the optional thing ``drop`` names absent (see ``VARIANTS``)."""
    now = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    req = SendStepInput(
        journey=journey,
        workflow_id=f"{journey}:c-sample",
        run_chain_id="run-sample",
        step=step.name,
        template=step.template,
        subject=step.subject,
        customer_id="c-sample",
        entered_at=now,
        now=now,
        coupon=step.coupon,
    )
    customer = Customer(
        id="c-sample",
        email="ada@example.com",
        first_name=None if drop == "first_name" else "Ada",
        last_name="Lovelace",
        attributes={},
    )
    line = {"sku": "TEE-1", "name": "Linen tee", "price": "19.90", "quantity": 2}
    if drop != "product_links":
        line |= {"url": f"{EVENTS}/p/tee-1", "image_url": f"{EVENTS}/img/tee-1.jpg"}
    cart = Cart(
        customer_id="c-sample",
        lines={"items": [] if drop == "cart_lines" else [line]},
        currency="EUR",
        checkout_url=None if drop == "checkout_url" else f"{EVENTS}/checkout/c-sample",
    )
    coupon = None
    if step.coupon is not None or drop != "coupon":
        coupon = Coupon(code="SAMPLE-AB12CD34", percent_off=10, expires_at=now)
    links = Links(base_url=PUBLIC, secret="sample-secret-for-checks")
    context = base_context(req, customer, cart, coupon, shop=SAMPLE_SHOP, links=links)
    context.update(_extra(drop))
    return context


def _extra(drop: str) -> dict[str, Any]:
    """The shape of ``activities.context.extra_context`` with sample products and an order."""

    def product(sku: str, name: str) -> dict[str, Any]:
        links = drop != "product_links"
        return {
            "sku": sku,
            "name": name,
            "category": "apparel",
            "price": Decimal("19.90"),
            "url": f"{EVENTS}/p/{sku.lower()}" if links else None,
            "image_url": f"{EVENTS}/img/{sku.lower()}.jpg" if links else None,
        }

    picks = [product("SOCK-2", "Wool socks"), product("CAP-3", "Cotton cap")]
    order = {
        "id": "o-1001",
        "total": Decimal("39.80"),
        "currency": "EUR",
        "lines": [{"sku": "TEE-1", "name": "Linen tee", "quantity": 2, "category": "apparel"}],
    }
    return {
        "product": None if drop == "product" else product("TEE-1", "Linen tee"),
        "accessories": [] if drop == "picks" else picks,
        "order": None if drop == "order" else order,
        "cross_sell": [] if drop == "picks" else picks,
        "picks": [] if drop == "picks" else picks,
        "birthday_known": drop == "",
        "tracking_url": None if drop == "tracking_url" else f"{EVENTS}/track/o-1001",
    }
