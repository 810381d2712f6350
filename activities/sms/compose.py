"""A text message from its template: rendered (``<template>.sms.j2``, Jinja2, a missing
variable is an error), every link through a short tracked link, the opt-out hint in the
customer's language appended to marketing texts, and its segments counted; a text over
SMS_MAX_SEGMENTS is refused, at load (``check_sms_templates``) and at send."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from activities.render import TemplateBroken, TemplateMissing
from core.sms import OPT_OUT_HINTS, segments, with_opt_out_hint
from journeys.config import JourneyConfigError

_URL = re.compile(r"""https?://[^\s<>"')]+""")
_TRAILING = ".,;:!?"
SHORT_TOKEN_CHARS = 8  # store.sms.SHORT_TOKEN_BYTES, base64url


class TooManySegments(TemplateBroken):
    """A text longer than SMS_MAX_SEGMENTS: names the template file and the count."""


def parse_hints(setting: str) -> dict[str, str]:
    """``SMS_OPT_OUT_HINTS`` ("en:Reply STOP to opt out;de:...") over the defaults."""
    hints = dict(OPT_OUT_HINTS)
    for part in setting.split(";"):
        lang, sep, text = part.partition(":")
        if sep and lang.strip():
            hints[lang.strip().lower()] = text.strip()
    return hints


class SmsComposer:
    def __init__(
        self,
        templates_dir: Path,
        *,
        max_segments: int,
        hints: Mapping[str, str] = OPT_OUT_HINTS,
        short_base: str,
    ) -> None:
        self._dir = templates_dir
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self.max_segments = max_segments
        self._hints = hints
        self._short_base = f"{short_base.rstrip('/')}/t/c/"

    def hint(self, language: str | None) -> str:
        lang = (language or "en").lower().split("-")[0]
        return self._hints.get(lang) or self._hints.get("en", "")

    def render(self, template: str, context: dict[str, Any]) -> str:
        """The template's text, whitespace of each line trimmed, blank lines dropped."""
        name = f"{template}.sms.j2"
        try:
            raw = self._env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateMissing(f"template {exc.name} not found") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateBroken(f"template {name}: {exc.message}") from exc
        return "\n".join(line.strip() for line in raw.splitlines() if line.strip())

    async def compose(
        self,
        template: str,
        context: dict[str, Any],
        *,
        language: str | None,
        transactional: bool,
        shorten: Callable[[str], Awaitable[str]],
    ) -> str:
        """The text as it goes out: links shortened (``shorten`` gives a link's token), the
        opt-out hint on marketing texts; refused over ``max_segments``."""
        text = self.render(template, context)
        for url in dict.fromkeys(links_in(text)):
            text = text.replace(url, self._short_base + await shorten(url))
        if not transactional:
            text = with_opt_out_hint(text, self.hint(language))
        self.refuse_if_long(template, text)
        return text

    def refuse_if_long(self, template: str, text: str) -> None:
        counted = segments(text)
        if counted.count > self.max_segments:
            raise TooManySegments(
                f"{self._dir / (template + '.sms.j2')}: {counted.count} segments "
                f"({counted.encoding}, {counted.units} characters), more than "
                f"SMS_MAX_SEGMENTS = {self.max_segments}"
            )

    def sample_text(self, template: str, context: dict[str, Any], *, transactional: bool) -> str:
        """What ``compose`` makes of a sample context, links as short links of full length,
        with the longest opt-out hint configured (the load check)."""
        text = self.render(template, context)
        for url in dict.fromkeys(links_in(text)):
            text = text.replace(url, self._short_base + "x" * SHORT_TOKEN_CHARS)
        if not transactional:
            longest = max(self._hints.values(), key=lambda h: segments(h).units, default="")
            text = with_opt_out_hint(text, longest)
        return text


def links_in(text: str) -> list[str]:
    return [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]


def check_sms_templates(journeys_dir: Path, composer: SmsComposer) -> None:
    """Every text step of every journey, rendered with the sample context of the template
    checks: a missing template or variable, or more than ``max_segments`` segments, raises
    JourneyConfigError naming the file (and the count)."""
    from activities.template_checks import load_any, sample_context

    for path in sorted(journeys_dir.glob("*.toml")):
        name = path.stem
        try:
            config = load_any(name, journeys_dir)
        except JourneyConfigError:
            continue  # no journey (lifecycle.toml), or a broken one: the journey checks say
        for step in config.steps:
            if step.channel != "sms":
                continue
            context = sample_context(config.name, step)
            try:
                text = composer.sample_text(
                    step.template, context, transactional=step.transactional
                )
                composer.refuse_if_long(step.template, text)
            except (TemplateMissing, TemplateBroken) as exc:
                raise JourneyConfigError(
                    f"{journeys_dir / (name + '.toml')}: step {step.name!r}: {exc}"
                ) from exc
