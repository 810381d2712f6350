"""What a journey knows and records besides its sends: the facts its branches read from the
store, the branches taken, tags, a sunset. Deterministic code only (activities)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        DecisionInput,
        FactsInput,
        JourneyFacts,
        JourneyState,
        SunsetInput,
        TagInput,
    )
    from core.ids import JOURNEY_STEP, run_key_prefix, send_key
    from journeys.config import JourneyConfig

SEND_ACTIVITY_TIMEOUT = timedelta(seconds=30)


class Records:
    """Part of :class:`workflows.base.Journey`, which sets these attributes."""

    config: JourneyConfig
    customer_id: str
    _workflow_id: str
    _run_chain_id: str
    _state: JourneyState
    _branches: dict[str, str]
    _fewer_events: bool  # FEWER_HISTORY_EVENTS (workflows.base)
    _step_to_show: str | None  # JourneyStep to write when the run next waits
    _step_written: str | None  # JourneyStep as last written (from FEWER_HISTORY_EVENTS on)

    def _set_journey_step(self, value: str) -> None:
        """JourneyStep := ``value``: written at once in runs begun before
        FEWER_HISTORY_EVENTS; from it on, when the run next waits (:meth:`_publish_step`),
        so a value the same workflow task replaces is never written (each write is a history
        event and visibility work on the server, and the UI never shows it)."""
        if self._fewer_events:
            self._step_to_show = value
        else:
            self._write_journey_step(value)

    def _publish_step(self) -> None:
        """Before the run waits (a timer, an activity, a pause): write the JourneyStep set
        since the last write, if it differs from what the UI shows."""
        value, self._step_to_show = self._step_to_show, None
        if value is not None and value != self._step_written:
            self._write_journey_step(value)

    def _write_journey_step(self, value: str) -> None:
        """The one upsert of JourneyStep (a history event), remembered as what is shown."""
        workflow.upsert_search_attributes([JOURNEY_STEP.value_set(value)])
        self._step_written = value

    @property
    def entered_at(self) -> datetime:
        return self._state.entered_at

    def sent_since(self, since: datetime) -> int:
        return sum(1 for d in self._state.decisions if d.status == "sent" and d.at >= since)

    def was_sent(self, step: str | None = None) -> bool:
        """Did an email of this run (of ``step``) go out? Held out, capped, skipped, failed
        or uncertain is not sent: a "did they react" decision counts only what was."""
        return any(
            d.status == "sent" and (step is None or d.step == step) for d in self._state.decisions
        )

    def has_engaged(self, kind: str) -> bool:
        """Did an ``engaged`` signal of this kind (opened, clicked) arrive?"""
        return any(e.kind == kind for e in self._state.engagements)

    def branch(self, name: str) -> str | None:
        """The value of a branch taken (``decide``), or None."""
        return self._branches.get(name)

    async def facts(
        self,
        *,
        ignore_order_id: str | None = None,
        order_skus: list[str] | None = None,
        view_sku: str | None = None,
        views_after_step: str | None = None,
    ) -> JourneyFacts:
        """What the store says the customer did since entering (orders, opens, clicks)."""
        ids = self._workflow_id, self._run_chain_id
        self._publish_step()
        facts: JourneyFacts = await workflow.execute_activity(
            "journey_facts",
            FactsInput(
                customer_id=self.customer_id,
                since=self.entered_at,
                send_key_prefix=run_key_prefix(*ids),
                ignore_order_id=ignore_order_id,
                order_skus=order_skus,
                view_sku=view_sku,
                views_after_send=send_key(*ids, views_after_step) if views_after_step else None,
            ),
            result_type=JourneyFacts,
            start_to_close_timeout=SEND_ACTIVITY_TIMEOUT,
            summary="read what the customer did",
        )
        return facts

    async def decide(self, name: str, value: str, reason: str) -> None:
        """Record a branch taken, in the state (query) and in the store (explain)."""
        self._branches[name] = value
        self._state.branches[name] = f"{value}: {reason}"
        workflow.logger.info(
            "%s branch %s = %s (%s)",
            self.config.name,
            name,
            value,
            reason,
            extra={"customer_id": self.customer_id},
        )
        self._set_journey_step(f"branch:{value}")
        decision = DecisionInput(
            customer_id=self.customer_id,
            journey=self.config.name,
            workflow_id=self._workflow_id,
            run_chain_id=self._run_chain_id,
            name=name,
            value=value,
            reason=reason,
            at=workflow.now(),
        )
        await self._record_activity("record_decision", decision, f"record branch {name} = {value}")

    async def tag(self, tag: str) -> None:
        data = TagInput(customer_id=self.customer_id, tag=tag)
        await self._record_activity("tag_customer", data, f"tag customer {tag}")

    async def sunset(self, reason: str) -> None:
        """No more marketing email to the address (list cleanup), with the reason."""
        data = SunsetInput(customer_id=self.customer_id, reason=reason)
        await self._record_activity("sunset_customer", data, "sunset the address")

    async def _record_activity(self, activity: str, arg: Any, summary: str) -> None:
        self._publish_step()
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=SEND_ACTIVITY_TIMEOUT, summary=summary
        )
