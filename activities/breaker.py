"""The SMTP circuit breaker (docs/architecture.md decision 12).

After ``threshold`` relay-side failures in a row (sender, policy, relay, credentials, or the
relay unreachable: ``SmtpFailure.relay_side``), sending pauses for every journey: the send
activity raises the retryable ``SendingPaused`` before it takes a connection, so each send is
held (retried, never failed, never recorded as anything) until the relay works again. After
``cooldown`` one attempt at a time goes through as the probe; its success resumes sending, a
relay-side failure pauses again for another cool-down. Any answer that is not the relay's
fault (a 250, a bounce, a 4xx for the mailbox) counts as success.

The state is a row per relay in the store (``smtp_breakers``), so every worker shares it and
/healthz (the API process) says ``smtp: paused (<reason>)``. A log line and metrics
(``journeys_smtp_paused``, ``journeys_smtp_breaker_opened``) say it too.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.mailer import SmtpFailure
from store import sends
from store.db import SessionFactory, readers
from store.models import SmtpBreaker, utcnow

log = logging.getLogger(__name__)

PAUSED_ERROR = "SendingPaused"


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5  # relay-side failures in a row that pause sending
    cooldown: timedelta = timedelta(seconds=30)  # paused at least this long before a probe

    @property
    def probe_for(self) -> timedelta:
        """How long one probe has the relay to itself before another attempt may probe."""
        return max(self.cooldown, timedelta(seconds=60))


class Breaker:
    def __init__(self, *, sessions: SessionFactory, relay: str, policy: BreakerPolicy) -> None:
        self._sessions = sessions
        self._readers = readers(sessions)  # SQLite: the read before each send takes no lock
        self.relay = relay
        self.policy = policy

    async def admit(self) -> bool:
        """Before a send takes a connection: raises ``SendingPaused`` while paused, lets the
        probe through after the cool-down. True when ``ok()`` has something to reset."""
        async with self._readers() as s:
            row = await sends.breaker(s, relay=self.relay)
        return await self.admit_as(row)

    async def admit_as(self, row: SmtpBreaker | None) -> bool:
        """``admit`` on the breaker's row as the caller read it a moment ago in its own
        transaction (the send's decision reads it there: one transaction fewer per send)."""
        if row is None:
            return False
        if row.opened_at is None:
            return row.failures > 0
        if utcnow() >= row.opened_at + self.policy.cooldown:
            async with self._sessions.begin() as s:
                probing = await sends.take_probe(
                    s,
                    relay=self.relay,
                    cooldown=self.policy.cooldown,
                    probe_for=self.policy.probe_for,
                )
            if probing:
                log.info(
                    "SMTP relay %s: this send is the probe (paused: %s)", self.relay, row.reason
                )
                return True
        raise self._paused(row)

    async def failed(self, failure: SmtpFailure) -> None:
        """A relay-side failure (``failure.relay_side``): one more in a row."""
        async with self._sessions.begin() as s:
            change = await sends.relay_failed(
                s, relay=self.relay, reason=failure.reason, threshold=self.policy.threshold
            )
        if change.opened and change.was_open:
            log.info(
                "SMTP sending stays paused on %s: %s (a probe, or a send under way when it "
                "paused); next probe in %s s",
                self.relay,
                failure.reason,
                self.policy.cooldown.total_seconds(),
            )
        elif change.opened:
            _meter().create_counter(
                "journeys_smtp_breaker_opened", "times sending paused for every journey"
            ).add(1)
            _meter().create_gauge("journeys_smtp_paused", "1 while sending is paused").set(1)
            log.warning(
                "SMTP sending paused for every journey: %d relay-side failures in a row on %s, "
                "the last %s; a probe in %s s",
                change.failures,
                self.relay,
                failure.reason,
                self.policy.cooldown.total_seconds(),
            )

    async def ok(self) -> None:
        """The relay answered as a working relay does: no failures in a row, not paused."""
        async with self._sessions.begin() as s:
            paused_since = await sends.relay_ok(s, relay=self.relay)
        if paused_since is not None:
            _meter().create_gauge("journeys_smtp_paused", "1 while sending is paused").set(0)
            log.warning(
                "SMTP sending resumed on %s: the probe passed (paused since %s)",
                self.relay,
                paused_since.isoformat(timespec="seconds"),
            )

    def _paused(self, row: SmtpBreaker) -> ApplicationError:
        assert row.opened_at is not None
        left = max(row.opened_at + self.policy.cooldown - utcnow(), timedelta(0))
        # Held sends come back spread over a second or two, not all in the same instant.
        delay = left + timedelta(seconds=1 + random.random())
        return ApplicationError(
            f"sending paused (relay {self.relay}: {row.reason}); held, retried in "
            f"{delay.total_seconds():.0f} s",
            type=PAUSED_ERROR,
            next_retry_delay=delay,
            category=ApplicationErrorCategory.BENIGN,
        )


def _meter() -> MetricMeter:
    return activity.metric_meter()
