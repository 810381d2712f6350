"""Record the workflow histories that tests/test_replay.py replays against the current code.

    uv run python scripts/record_histories.py          # every history still missing
    uv run python scripts/record_histories.py --only clicked_after_first_reminder
    uv run python scripts/record_histories.py --only welcome_series   # a journey's branches
    uv run python scripts/record_histories.py --dry-run  # drive and check, write nothing
    uv run python scripts/record_histories.py --force  # re-record the current versions

Each branch drives the real journey the way a shop does (starter API, the HTTP app for opens
and clicks, worker from worker.py, SMTP catcher, migrated SQLite store) on a dev server with
per-workflow time skipping, checks how the run ended, and writes its history to
``tests/histories/<journey>__<branch>__v<N>.json``, N being the journey's workflow *code*
version in ``CODE_VERSIONS`` below. Bump N when you put a change behind ``workflow.patched``.
Existing files are kept (``--force`` re-records those of the current versions; never do that
once a version is deployed), so the runs of older code keep replaying in the tests.
See docs/changing-a-journey.md.

The branches are in ``scripts/histories/<journey>.py``: one function per branch and a line in
that module's ``BRANCHES`` (the outcome the run must end with, and the steps it must have
sent). A new journey: a module like those, listed in ``JOURNEYS`` and ``CODE_VERSIONS`` here.
"""

# ruff: noqa: E402  (the repo root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the project, and the histories package

from histories import browse_follow_up, cart_recovery, new_customer_nurture, welcome_series
from histories.common import Branch, Handle, check, finished
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.testing._timeskipping import TimeSkippingConfig

from devstack.catcher import MailCatcher
from settings import Settings, temporal_cli
from starter.api import Journeys
from store.db import make_engine, make_session_factory
from store.migrate import upgrade
from tests.conftest import Stack
from worker import build_worker, make_mailer
from workflows.common import SEARCH_ATTRIBUTES

HISTORIES = ROOT / "tests" / "histories"

# The workflow code version of each journey: bump it with every `workflow.patched` change.
CODE_VERSIONS = {
    "cart_recovery": 2,
    "welcome_series": 1,
    "new_customer_nurture": 1,
    "browse_follow_up": 1,
}

JOURNEYS = (cart_recovery, welcome_series, new_customer_nurture, browse_follow_up)

# journey -> branch name -> (how to drive it, the outcome it must end with, the steps sent)
BRANCHES: dict[str, dict[str, Branch]] = {module.JOURNEY: module.BRANCHES for module in JOURNEYS}


def history_path(journey: str, branch: str, version: int) -> Path:
    return HISTORIES / f"{journey}__{branch}__v{version}.json"


@asynccontextmanager
async def recording_stack() -> AsyncIterator[Stack]:
    """The parts tests/conftest.py builds, once, for a script: dev server with time skipping
    (off until a branch fast-forwards its run), SMTP catcher, a fresh migrated SQLite store."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=temporal_cli(Settings()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    catcher = MailCatcher().start()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'journeys.db'}"
        await upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        settings = Settings(
            environment="test",
            temporal_task_queue="record-histories",
            database_url=url,
            smtp_host=catcher.host,
            smtp_port=catcher.port,
            mail_from="Example Shop <shop@shop.test>",
            public_base_url="https://shop.test",
            secret_key="history-secret-key-0123456789",
            journeys_dir=ROOT / "journeys",
        )
        mailer = make_mailer(settings)
        try:
            async with (
                env,
                build_worker(
                    env.client, settings=settings, sessions=sessions, mailer=mailer
                ) as worker,
            ):
                yield Stack(
                    env=env,
                    client=env.client,
                    settings=settings,
                    sessions=sessions,
                    catcher=catcher,
                    journeys=Journeys(client=env.client, sessions=sessions, settings=settings),
                    worker=worker,
                )
        finally:
            await mailer.close()
            await engine.dispose()
            catcher.stop()


def selected(only: set[str]) -> list[tuple[str, str, Branch]]:
    """(journey, branch name, branch) of every branch ``only`` names by its name, its
    journey's name or ``journey/branch``; all of them when ``only`` is empty."""
    return [
        (journey, name, branch)
        for journey, branches in BRANCHES.items()
        for name, branch in branches.items()
        if not only or {name, journey, f"{journey}/{name}"} & only
    ]


async def run_branch(stack: Stack, journey: str, name: str, branch: Branch) -> Handle:
    """Drive one branch, on a customer of its own, and check how the run ended."""
    # A fresh store and server: ids are free. (Kept short: a long X-Journey header is folded,
    # and tests.helpers.journey_mails then misses the mail; branch names are unique.)
    cid = f"c-{name}".replace("_", "-")
    handle = await branch.drive(stack, cid)
    result = await finished(handle)
    check(result.outcome == branch.outcome, f"ended {result.outcome!r}, not {branch.outcome!r}")
    if branch.sent is not None:
        want = [step.format(cid=cid) for step in branch.sent]
        check(list(result.sent) == want, f"sent {result.sent}, not {want}")
    print(f"{journey}/{name}: {result.outcome}, sent {result.sent}")
    return handle


async def record(*, only: set[str], force: bool, dry_run: bool = False) -> list[Path]:
    """Record the branches whose history for the current code version is missing (all of
    them with ``force``); files of other versions are left alone. ``dry_run``: drive and
    check the selected branches, write nothing. A branch that fails is reported, not
    written; the others go on."""
    plan = [
        (journey, name, branch, history_path(journey, name, CODE_VERSIONS[journey]))
        for journey, name, branch in selected(only)
        if dry_run or force or not history_path(journey, name, CODE_VERSIONS[journey]).exists()
    ]
    if not plan:
        print(
            "Every history of the current code versions exists; nothing recorded. "
            "Changed a workflow behind workflow.patched? Bump its CODE_VERSIONS entry."
        )
        return []
    HISTORIES.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    failed: list[str] = []
    async with recording_stack() as stack:
        for journey, name, branch, path in plan:
            try:
                handle = await run_branch(stack, journey, name, branch)
            except Exception as exc:
                failed.append(f"{journey}/{name}: {type(exc).__name__}: {exc}")
                print(f"FAILED {failed[-1]}", file=sys.stderr)
                continue
            if not dry_run:
                path.write_text((await handle.fetch_history()).to_json() + "\n")
                written.append(path)
                print(f"  wrote {path.relative_to(ROOT)}")
    if failed:
        raise SystemExit(
            f"{len(failed)} branch(es) failed, nothing written for them:\n" + "\n".join(failed)
        )
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="only this branch, journey or journey/branch (repeatable)",
    )
    parser.add_argument(
        "--force", action="store_true", help="re-record the current versions' histories too"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="drive and check the branches, write nothing"
    )
    args = parser.parse_args()
    names = {
        n
        for journey, branches in BRANCHES.items()
        for b in branches
        for n in (journey, b, f"{journey}/{b}")
    }
    named = [b for branches in BRANCHES.values() for b in branches]
    twice = {b for b in named if named.count(b) > 1}
    if twice:  # they name the customers and --only
        parser.error(f"branch names used by two journeys: {', '.join(sorted(twice))}")
    unknown = set(args.only) - names
    if unknown:
        parser.error(f"unknown branch(es) or journey(s): {', '.join(sorted(unknown))}")
    unversioned = set(BRANCHES) - set(CODE_VERSIONS)
    if unversioned:
        parser.error(f"no CODE_VERSIONS entry for {', '.join(sorted(unversioned))}")
    asyncio.run(record(only=set(args.only), force=args.force, dry_run=args.dry_run))


if __name__ == "__main__":
    main()
