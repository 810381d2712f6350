"""The mail a shop would send: every journey step's template and subject rendered against
sample contexts (with and without each optional field) at test time, so a missing variable,
a greeting that reads wrong without a name or a link off the storefront fails here with the
file's name, not in a customer's inbox."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from activities.render import Rendered, Renderer, build_message
from activities.template_checks import (
    EVENTS,
    PUBLIC,
    SAMPLE_SHOP,
    STOREFRONT,
    VARIANTS,
    check_templates,
    links_in,
    load_any,
    sample_context,
)
from core.links import Links
from journeys.config import NOT_JOURNEYS, JourneyConfig
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
JOURNEYS = ROOT / "journeys"


def test_every_step_of_every_journey_renders_with_and_without_each_optional_field() -> None:
    problems = check_templates(JOURNEYS)
    assert not problems, "\n".join(str(p) for p in problems)


@pytest.mark.parametrize("drop", VARIANTS)
def test_every_email_shows_the_shop_and_reads_well_without_each_optional_field(drop: str) -> None:
    renderer = Renderer(JOURNEYS / "templates")
    steps = [
        (path.stem, step)
        for path in sorted(JOURNEYS.glob("*.toml"))
        if path.stem not in NOT_JOURNEYS
        for step in _any_config(path.stem).steps
    ]
    assert len(steps) >= 20  # every journey's steps, not an empty loop
    for journey, step in steps:
        if drop == "coupon" and step.coupon is not None:
            continue
        context = sample_context(journey, step, drop=drop)
        mail = renderer.render(template=step.template, subject=step.subject, context=context)
        label = f"{journey}/{step.name} without {drop or 'nothing'}"
        for text in (mail.subject, mail.text, mail.html):
            assert "there!" not in text and "there," not in text, label
            assert "Hi ," not in text and "Hello ," not in text and ", !" not in text, label
            assert "None" not in text, label
        for part in (mail.text, mail.html):
            assert SAMPLE_SHOP.name in part, label
            assert "Sample Shop Ltd, 1 Sample Street, 10115 Berlin, Germany" in part, label
            assert context["unsubscribe_url"] in part.replace("&amp;", "&"), label
            if context["report_url"]:  # "report this email": every marketing email
                assert context["report_url"] in part.replace("&amp;", "&"), label
            assert SAMPLE_SHOP.support_email in part, label
            for url in links_in(part):
                ours = (f"{PUBLIC}/u/", f"{PUBLIC}/s/", f"{PUBLIC}/r/")
                assert url.startswith((STOREFRONT, EVENTS, *ours)), (label, url)
        if drop == "first_name":
            assert "Ada" not in mail.subject + mail.text + mail.html, label


def test_subjects_read_well_with_and_without_a_first_name() -> None:
    renderer = Renderer(JOURNEYS / "templates")
    welcome = _any_config("welcome_series").step("welcome")
    cart = _any_config("cart_recovery").step("reminder_1")
    said = {
        (step.name, drop): renderer.render(
            template=step.template,
            subject=step.subject,
            context=sample_context(journey, step, drop=drop),
        ).subject
        for journey, step in (("welcome_series", welcome), ("cart_recovery", cart))
        for drop in ("", "first_name")
    }
    assert said == {
        ("welcome", ""): "Welcome, Ada! Here is 10% off your first order",
        ("welcome", "first_name"): "Welcome! Here is 10% off your first order",
        ("reminder_1", ""): "Ada, you left something in your cart",
        ("reminder_1", "first_name"): "You left something in your cart",
    }


def test_a_run_started_with_an_old_bare_first_name_subject_keeps_its_greeting() -> None:
    """Runs carry their config: one started before the subjects were rewritten still has
    "Welcome, {{ first_name }}!" and must not read "Welcome, !" for a customer without a name."""
    renderer = Renderer(JOURNEYS / "templates")
    welcome = _any_config("welcome_series").step("welcome")
    context = sample_context("welcome_series", welcome, drop="first_name")
    old = "Welcome, {{ first_name }}! Here is {{ coupon.percent_off }}% off your first order"
    subject = renderer.render(template=welcome.template, subject=old, context=context).subject
    assert subject == "Welcome, there! Here is 10% off your first order"


def test_cart_block_shows_product_images_and_links_from_events_and_their_checkout_link() -> None:
    renderer = Renderer(JOURNEYS / "templates")
    step = _any_config("cart_recovery").step("reminder_1")
    mail = renderer.render(
        template=step.template,
        subject=step.subject,
        context=sample_context("cart_recovery", step),
    )
    assert f'<img src="{EVENTS}/img/tee-1.jpg"' in mail.html
    assert f'href="{EVENTS}/p/tee-1"' in mail.html
    assert f"{EVENTS}/checkout/c-sample" in mail.html  # the event's checkout link wins
    without = renderer.render(
        template=step.template,
        subject=step.subject,
        context=sample_context("cart_recovery", step, drop="checkout_url"),
    )
    assert f"{STOREFRONT}/cart" in without.html and f"{STOREFRONT}/cart" in without.text


def test_a_missing_variable_an_unknown_template_and_a_stray_link_fail_naming_the_file(
    tmp_path: Path,
) -> None:
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    templates = journeys / "templates"
    need_help = templates / "need_help.html.j2"
    need_help.write_text(need_help.read_text().replace("{{ shop_url }}/help", "{{ shop_link }}"))
    feedback = templates / "feedback.txt.j2"
    feedback.write_text(
        feedback.read_text().replace("Just reply", "See https://api.example.com/help. Just reply")
    )
    birthday = journeys / "birthday.toml"
    birthday.write_text(birthday.read_text().replace('"birthday_greeting"', '"birthday_card"'))
    cart = journeys / "cart_recovery.toml"
    cart.write_text(
        cart.read_text().replace(
            'subject = "Your cart is still saved"', 'subject = "Hi {{ first_name }}, still saved"'
        )
    )

    found = [str(p) for p in check_templates(journeys)]

    def about(file: Path, words: str) -> bool:
        return any(line.startswith(str(file)) and words in line for line in found)

    assert about(need_help, "'shop_link' is undefined"), found
    assert about(feedback.with_name("feedback.txt.j2"), "https://api.example.com/help"), found
    assert about(birthday, "birthday_card"), found
    assert about(cart, "without first_name: subject 'Hi , still saved'"), found


def test_html_part_has_no_mime_version_and_the_open_pixel_is_a_visible_1x1_image() -> None:
    links = Links(base_url=PUBLIC, secret="sample-secret-for-checks")
    html = links.track_html(
        "<html><body><p>Hi</p></body></html>", customer_id="c-1", send_key="k", keep=set()
    )
    pixel = next(line for line in html.splitlines() if "/t/o/" in line)
    assert 'width="1" height="1"' in pixel and "display:none" not in pixel.replace(" ", "")
    msg = build_message(
        rendered=Rendered(subject="Hello", text="Hello\n", html=html),
        mail_from="Sample Shop <shop@storefront.check>",
        to_email="ada@example.com",
        to_name=None,
        message_id="<x@storefront.check>",
        date=datetime(2025, 3, 1, tzinfo=UTC),
        unsubscribe_url=f"{PUBLIC}/u/token",
    )
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(isinstance(p, EmailMessage) and "MIME-Version" not in p for p in parts)
    assert msg["MIME-Version"] == "1.0"


def test_shop_settings_are_required_outside_development_and_named_when_missing() -> None:
    # The shop's own rule alone (other settings have rules of their own for production).
    def production(**shop: str) -> Settings:
        values: dict[str, Any] = {"environment": "production", **shop}
        return Settings.model_construct(**values)

    assert production().shop_problem() == (
        "SHOP_URL, SHOP_NAME, SHOP_POSTAL_ADDRESS, SHOP_SUPPORT_EMAIL not set: every email "
        "shows the shop's storefront, name, postal address (CAN-SPAM) and support address; "
        "set them for ENVIRONMENT=production (development or test use a demo shop)"
    )
    shop = {
        "shop_url": "https://www.teashop.example/",
        "shop_name": "Tea Shop",
        "shop_postal_address": "Tea Shop GmbH\nTeeweg 1\n20095 Hamburg",
        "shop_support_email": "hello@teashop.example",
    }
    problem = production(**{**shop, "shop_support_email": " "}).shop_problem()
    assert problem is not None and problem.startswith("SHOP_SUPPORT_EMAIL not set")
    assert production(**shop).shop_problem() is None
    ready = production(**shop).shop.context()
    assert ready["url"] == "https://www.teashop.example"
    assert ready["postal_address"] == "Tea Shop GmbH, Teeweg 1, 20095 Hamburg"
    assert ready["sign_off"] == "The Tea Shop team"
    demo = Settings(environment="test").shop
    assert demo.url and demo.name and demo.postal_address and demo.support_email


def test_shop_links_are_under_the_storefront_not_the_tracking_host() -> None:
    step = _any_config("welcome_series").step("need_help")
    context = sample_context("welcome_series", step)
    assert context["shop_url"] == STOREFRONT
    assert context["unsubscribe_url"].startswith(f"{PUBLIC}/u/")
    text = Renderer(JOURNEYS / "templates").render(
        template=step.template, subject=step.subject, context=context
    )
    assert f"{STOREFRONT}/help" in text.text and f"{PUBLIC}/help" not in text.text


def _any_config(name: str) -> JourneyConfig:
    return load_any(name, JOURNEYS)


def test_the_worker_refuses_to_start_naming_a_template_with_a_missing_variable_or_stray_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import worker

    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    worker.check_journey_templates(journeys)  # a good copy starts
    need_help = journeys / "templates" / "need_help.html.j2"
    need_help.write_text(need_help.read_text().replace("{{ shop_url }}/help", "{{ help_url }}"))
    last_call = journeys / "templates" / "last_call.txt.j2"
    last_call.write_text(
        last_call.read_text().replace(
            "{% endblock %}", "More: https://api.example.com/x\n{% endblock %}"
        )
    )
    settings = Settings(environment="test", journeys_dir=journeys)
    monkeypatch.setattr(worker, "get_settings", lambda: settings)
    monkeypatch.setattr(worker, "configure_logging", lambda _: None)
    connected: list[object] = []
    monkeypatch.setattr(worker, "connect", lambda *a: connected.append(a))

    with pytest.raises(SystemExit) as stopped:
        asyncio.run(worker.main())

    said = str(stopped.value)
    assert said.startswith("worker not started: ")
    assert f"{need_help}: step 'need_help'" in said and "'help_url' is undefined" in said
    assert f"{last_call}: step 'last_call'" in said and "https://api.example.com/x" in said
    assert connected == []  # it stopped before it reached Temporal


def test_each_ab_variants_subject_and_template_is_checked_naming_the_variant(
    tmp_path: Path,
) -> None:
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    variant = journeys / "templates" / "cart_reminder_1_bold.html.j2"
    variant.write_text(
        (journeys / "templates" / "cart_reminder_1.html.j2")
        .read_text()
        .replace("{% block body %}", "{% block body %}<p>{{ cart.saved_until }}</p>")
    )
    shutil.copy(
        journeys / "templates" / "cart_reminder_1.txt.j2",
        variant.with_suffix("").with_suffix(".txt.j2"),
    )
    cart = journeys / "cart_recovery.toml"
    step = 'subject = "Your cart is still saved"\n'
    cart.write_text(
        cart.read_text().replace(
            step,
            step
            + '\n[[steps.variants]]\nname = "plain"\nsubject = "Your cart is still saved"\n'
            + '\n[[steps.variants]]\nname = "bold"\nsubject = "Hi {{ first_name }}, it is saved"\n'
            + '\n[[steps.variants]]\nname = "new"\nsubject = "Saved for you"\n'
            + 'template = "cart_reminder_1_bold"\n',
        )
    )

    found = [str(p) for p in check_templates(journeys)]

    assert any(
        line.startswith(f"{cart}: step 'reminder_3', variant 'bold'")
        and "without first_name: subject 'Hi , it is saved'" in line
        for line in found
    ), found
    assert any(
        line.startswith(f"{variant}: step 'reminder_3', variant 'new'") and "'saved_until'" in line
        for line in found
    ), found
    assert not any("variant 'plain'" in line for line in found), found
