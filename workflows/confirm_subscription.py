"""Confirm subscription: the double opt-in's confirmation email, and nothing else.

Trigger: a signup that gives marketing consent while DOUBLE_OPT_IN is on
(starter/ingest/opt_in.py; id ``confirm-subscription:<customer>``, one live run). One
transactional step: it goes to the address even while its marketing mail waits for the
confirmation (suppressed "unconfirmed"), past quiet hours and the cap; never to an address
that hard-bounced or complained. The link's page records the consent and starts what the
signup would have started (docs/decisions/0010-double-opt-in.md).
"""

from __future__ import annotations

from temporalio import workflow

from workflows.base import Journey

with workflow.unsafe.imports_passed_through():
    from core.contracts import ConfirmInput, JourneyResult


@workflow.defn(name="ConfirmSubscription")
class ConfirmSubscription(Journey):
    @workflow.init
    def __init__(self, inp: ConfirmInput) -> None:
        super().__init__(inp)

    @workflow.run
    async def run(self, inp: ConfirmInput) -> JourneyResult:
        return await self.walk(self.timeline(inp))

    async def timeline(self, inp: ConfirmInput) -> str:
        context = {"confirm_url": inp.confirm_url, "consent_text": inp.consent_text}
        outcome = await self.send(inp.config.step("confirm"), context=context)
        return "asked" if outcome.status == "sent" else outcome.status
