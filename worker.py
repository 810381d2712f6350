"""The worker: every journey workflow and activity on one task queue.

``python worker.py`` runs it from settings until SIGINT/SIGTERM, then shuts down gracefully
(running activities get a grace period; workflows simply resume elsewhere later).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerDeploymentConfig,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.breaker import BreakerPolicy
from activities.journey import JourneyActivities
from activities.lifecycle import LifecycleActivities
from activities.mailer import SmtpPool
from activities.pacing import Pacer
from activities.render import Renderer
from activities.send import MailSettings, SendActivities
from activities.sms.compose import SmsComposer, check_sms_templates, parse_hints
from activities.sms.delivery import Texts
from activities.sms.provider import TwilioSms
from activities.sweep import SweepActivities, sunset_rule
from activities.template_checks import check_templates
from core.lifecycle import load_lifecycle
from core.sending import SEND_START_TO_CLOSE
from journeys.loader import JourneyLoader
from observability import configure_logging, runtime_with_metrics
from settings import ROOT, Settings, get_settings
from starter.client import connect
from starter.schedule import SCHEDULE_ID, ensure_daily_sweep
from store.db import SessionFactory, engine_for, make_session_factory
from versioning import DeclaredVersioning
from workflows.birthday import BirthdayGreeting
from workflows.browse_follow_up import BrowseFollowUp
from workflows.cart_recovery import CartRecovery
from workflows.confirm_subscription import ConfirmSubscription
from workflows.holidays import HolidayGreeting
from workflows.lifecycle_sweep import LifecycleSweep
from workflows.nurture import NewCustomerNurture
from workflows.stimulation import RepeatedStimulation
from workflows.sweep import DailySweep
from workflows.vip_care import VipCare
from workflows.welcome_series import WelcomeSeries
from workflows.win_back import WinBack

WORKFLOWS: Sequence[type] = (
    CartRecovery,
    WelcomeSeries,
    NewCustomerNurture,
    BrowseFollowUp,
    WinBack,
    BirthdayGreeting,
    DailySweep,
    ConfirmSubscription,
    LifecycleSweep,
    VipCare,
    HolidayGreeting,
    RepeatedStimulation,
)

PINNED = VersioningBehavior.PINNED
AUTO_UPGRADE = VersioningBehavior.AUTO_UPGRADE
# Worker Versioning (decision 0019): how the open runs of each journey meet a new build,
# chosen by its longest run, here and nowhere else (a versioned worker declares these;
# an unversioned one nothing). PINNED: a run ends on the build it started on, so a change
# needs no workflow.patched for it; the old build's workers run until its runs drain. That
# suits runs whose last step is due within PINNED_UP_TO of their start. AUTO_UPGRADE: a run
# moves to the current build at its next workflow task and replays its history there, so a
# change stays behind workflow.patched; for runs of weeks to months, which would hold every
# old build up that long. Longest runs as shipped (tests/test_versioning.py checks them
# against the TOMLs); an operator's wait held by the cap (cap_wait) or a pause comes on top.
PINNED_UP_TO = timedelta(days=14)
VERSIONING: Mapping[type, VersioningBehavior] = {
    CartRecovery: PINNED,  # 7 days: the discount, 7d after the cart was left
    WelcomeSeries: PINNED,  # 12 days: the preferences email
    BrowseFollowUp: PINNED,  # 14 days: away_for 7d, then the coupon 7d on
    ConfirmSubscription: PINNED,  # one email, at once
    BirthdayGreeting: PINNED,  # the day: the sweep starts it on the birthday
    HolidayGreeting: PINNED,  # the day: the sweep starts it on the holiday
    DailySweep: PINNED,  # minutes (each page continues as new, on the same build)
    LifecycleSweep: PINNED,  # minutes: the sweep's child, on the sweep's build
    WinBack: AUTO_UPGRADE,  # 22 days: last call 7d, then sunset_after 15d
    NewCustomerNurture: AUTO_UPGRADE,  # 60 days: the offer
    VipCare: AUTO_UPGRADE,  # 60 days: early access
    RepeatedStimulation: AUTO_UPGRADE,  # 150 days: round 5
}

log = logging.getLogger("worker")


def make_mailer(settings: Settings) -> SmtpPool:
    return SmtpPool(
        host=settings.smtp_target_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_use_tls,
        timeout=settings.smtp_timeout_seconds,
        size=settings.smtp_pool_size,
    )


def make_texts(settings: Settings) -> Texts:
    """The SMS provider (Twilio's API: Twilio, or the local catcher) and the composer; a
    text template over SMS_MAX_SEGMENTS fails here, at start (naming file and count)."""
    sid, token = settings.twilio_credentials
    composer = SmsComposer(
        settings.journeys_dir / "templates",
        max_segments=settings.sms_max_segments,
        hints=parse_hints(settings.sms_opt_out_hints),
        short_base=settings.public_base_url,
    )
    check_sms_templates(settings.journeys_dir, composer)
    return Texts(
        provider=TwilioSms(
            base_url=settings.twilio_url,
            account_sid=sid,
            auth_token=token,
            sender=settings.sms_from,
            timeout=settings.sms_timeout_seconds,
        ),
        composer=composer,
        status_callback=f"{settings.public_base_url.rstrip('/')}/v1/sms/status",
    )


# The longest SMTP path of one send, in timeouts of one command: connect and greeting, EHLO,
# STARTTLS, AUTH, the NOOP of an idle connection, MAIL, RCPT, DATA, the reply to the dot.
SMTP_PATH_COMMANDS = 9


def check_send_timeouts(settings: Settings) -> None:
    """The send activity's start-to-close (core.sending) must outlast the whole SMTP path:
    waiting for the provider's turn and for a pool connection (each at most
    SMTP_POOL_WAIT_SECONDS), then every command at its timeout."""
    path = 2 * settings.smtp_pool_wait_seconds + SMTP_PATH_COMMANDS * settings.smtp_timeout_seconds
    if path >= SEND_START_TO_CLOSE.total_seconds():
        raise ValueError(
            f"2 x SMTP_POOL_WAIT_SECONDS + {SMTP_PATH_COMMANDS} x SMTP_TIMEOUT_SECONDS = "
            f"{path:.0f} s "
            f"does not fit in the send activity's start-to-close "
            f"({SEND_START_TO_CLOSE.total_seconds():.0f} s): lower them"
        )


def check_journey_templates(journeys_dir: Path) -> None:
    """Every step of every journey renders against sample contexts, with and without each
    optional field (activities/template_checks.py); a missing variable (StrictUndefined), an
    unknown template or a link off the storefront raises ValueError naming each file."""
    problems = check_templates(journeys_dir)
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise ValueError(f"{len(problems)} problem(s) in the journeys' templates:\n{listed}")


def build_activities(
    *,
    settings: Settings,
    sessions: SessionFactory,
    mailer: SmtpPool,
    send_class: type[SendActivities] = SendActivities,
    client: Client | None = None,
) -> list[Any]:
    """Every activity; the daily sweep's needs a client (it starts journeys)."""
    check_send_timeouts(settings)
    send = send_class(
        sessions=sessions,
        mailer=mailer,
        renderer=Renderer(settings.journeys_dir / "templates"),
        mail=MailSettings(
            mail_from=settings.mail_from,
            public_base_url=settings.public_base_url,
            secret_key=settings.secret_key,
            shop=settings.shop,
        ),
        breaker=BreakerPolicy(
            threshold=settings.smtp_breaker_failures,
            cooldown=timedelta(seconds=settings.smtp_breaker_cooldown_seconds),
        ),
        pool_wait=settings.smtp_pool_wait_seconds,
        pacer=Pacer(settings.provider_rates, max_wait=settings.smtp_pool_wait_seconds),
        texts=make_texts(settings),
    )
    journey = JourneyActivities(sessions=sessions)
    lifecycle = LifecycleActivities(sessions=sessions, client=client)
    activities = [
        send.send_step,
        send.send_gave_up,
        journey.journey_facts,
        journey.record_decision,
        journey.record_entry,
        journey.tag_customer,
        journey.sunset_customer,
        lifecycle.lifecycle_page,
    ]
    if client is not None:
        sunset = sunset_rule(
            after_emails=settings.sunset_after_emails,
            after_days=settings.sunset_after_days,
            journeys_dir=settings.journeys_dir,
        )
        activities.append(
            SweepActivities(sessions=sessions, client=client, sunset=sunset).sweep_page
        )
    return activities


def build_worker(
    client: Client,
    *,
    settings: Settings,
    sessions: SessionFactory,
    mailer: SmtpPool,
    task_queue: str | None = None,
    send_class: type[SendActivities] = SendActivities,
) -> Worker:
    versioned = deployment_config(settings)
    # workflows.base is deterministic and keeps no state: imported once, not again for
    # every run in the sandbox (that re-import was a quarter of the worker's CPU).
    runner: WorkflowRunner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.base")
    )
    unsandboxed: WorkflowRunner = UnsandboxedWorkflowRunner()
    if versioned is not None:  # PINNED or AUTO_UPGRADE per journey (VERSIONING)
        runner = DeclaredVersioning(runner, VERSIONING)
        unsandboxed = DeclaredVersioning(unsandboxed, VERSIONING)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=list(WORKFLOWS),
        activities=build_activities(
            client=client,
            settings=settings,
            sessions=sessions,
            mailer=mailer,
            send_class=send_class,
        ),
        workflow_runner=runner,
        unsandboxed_workflow_runner=unsandboxed,
        activity_executor=ThreadPoolExecutor(4),
        graceful_shutdown_timeout=timedelta(seconds=10),
        deployment_config=versioned,
    )


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning (docs/changing-a-journey.md): the version WORKER_BUILD_ID (else the
    git commit of ROOT) of the worker deployment WORKER_DEPLOYMENT; None (unversioned) when
    WORKER_DEPLOYMENT is empty. The deployment's default is AUTO_UPGRADE; build_worker
    declares PINNED for the short journeys (VERSIONING, decision 0019) on versioned workers
    only. Raises ValueError when no build id can be found."""
    if not settings.worker_deployment:
        return None
    build_id = settings.worker_build_id or git_commit()
    if not build_id:
        raise ValueError("WORKER_BUILD_ID is empty and the worker runs outside a git checkout")
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.worker_deployment, build_id=build_id
        ),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


def git_commit() -> str:
    """The commit of the checkout the worker runs from, or "" outside one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


async def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    try:  # fail at start, naming the file, rather than at a customer's send
        check_journey_templates(settings.journeys_dir)
    except ValueError as exc:
        log.error("%s", exc)
        raise SystemExit(f"worker not started: {exc}") from None
    client = await connect(settings, runtime_with_metrics(settings))
    engine = engine_for(settings)
    mailer = make_mailer(settings)
    sessions = make_session_factory(engine)
    worker = build_worker(client, settings=settings, sessions=sessions, mailer=mailer)
    configs = JourneyLoader(settings.journeys_dir, speedup=settings.journey_speedup)
    done = await ensure_daily_sweep(
        client,
        configs,
        settings.temporal_task_queue,
        lifecycle=load_lifecycle(settings.journeys_dir),
    )
    log.info("schedule %r %s (journeys/win_back.toml [sweep])", SCHEDULE_ID, done)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %r on %s (namespace %s); metrics at %s",
        settings.temporal_task_queue,
        settings.temporal_target,
        settings.temporal_namespace,
        f"http://{settings.metrics_bind}/metrics" if settings.metrics_bind else "off",
    )
    async with worker:
        await stop.wait()
        log.info("shutting down")
    await mailer.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
