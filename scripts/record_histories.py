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
A workflow that continues as new has one history per run: the first run's goes to that file,
run K's (K >= 2) to ``<journey>__<branch>__run<K>__v<N>.json``.
Existing files are kept (``--force`` re-records those of the current versions; never do that
once a version is deployed), so the runs of older code keep replaying in the tests.
See docs/changing-a-journey.md.

The branches are in ``scripts/histories/<journey>.py``: one function per branch and a line in
that module's ``BRANCHES`` (the outcome the run must end with, and the steps it must have
sent). A new journey: a module like those, listed in ``JOURNEYS`` and ``CODE_VERSIONS`` here.
A branch driven by the daily sweep (which looks at every customer in its store) runs on a
store of its own (``Branch(..., own_store=True)``); so does a branch that needs journey
settings other than the shipped TOMLs (``Branch(..., journeys={"win_back": {...}})``).
"""

# ruff: noqa: E402  (the repo root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the project, and the histories package

from histories import (
    birthday,
    browse_follow_up,
    cart_recovery,
    confirm_subscription,
    daily_sweep,
    holidays,
    lifecycle_sweep,
    new_customer_nurture,
    stimulation,
    vip_care,
    welcome_series,
    win_back,
)
from histories.common import Branch, Handle, check, finished
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from devstack.catcher import MailCatcher
from store.db import make_engine, make_session_factory
from testkit.databases import migrated_sqlite
from testkit.servers import start_time_skipping_server
from testkit.stack import Stack, copy_journeys, running_stack, stack_settings

HISTORIES = ROOT / "tests" / "histories"

# The workflow code version of each journey: bump it with every `workflow.patched` change.
CODE_VERSIONS = {  # every journey +1 at 0024 (record-entry-locally-and-one-journey-step-per-task)
    "cart_recovery": 5,
    "welcome_series": 4,
    "new_customer_nurture": 3,
    "browse_follow_up": 3,
    "win_back": 3,
    "birthday": 3,  # 2: the greeting's text goes along (sms-texts-along-email-steps)
    "daily_sweep": 2,
    "lifecycle_sweep": 2,
    "vip_care": 2,
    "holidays": 2,
    "stimulation": 2,
    "confirm_subscription": 2,
}

JOURNEYS = (
    cart_recovery,
    welcome_series,
    new_customer_nurture,
    browse_follow_up,
    win_back,
    birthday,
    daily_sweep,
    lifecycle_sweep,
    confirm_subscription,
    vip_care,
    holidays,
    stimulation,
)

# journey -> branch name -> (how to drive it, the outcome it must end with, the steps sent)
BRANCHES: dict[str, dict[str, Branch]] = {module.JOURNEY: module.BRANCHES for module in JOURNEYS}


def history_path(journey: str, branch: str, version: int, run: int = 1) -> Path:
    """Where a branch's history goes; ``run``: which run of a chain continued as new."""
    kind = branch if run == 1 else f"{branch}__run{run}"
    return HISTORIES / f"{journey}__{kind}__v{version}.json"


@asynccontextmanager
async def recording_stack() -> AsyncIterator[Stack]:
    """The parts the tests build (testkit), once, for a script: dev server with time skipping
    (off until a branch fast-forwards its run), SMTP catcher, a fresh migrated SQLite store
    with a worker on it."""
    env = await start_time_skipping_server()
    catcher = MailCatcher().start()
    try:
        async with env, store_stack(env, catcher, "record-histories") as stack:
            yield stack
    finally:
        catcher.stop()


@asynccontextmanager
async def store_stack(
    env: WorkflowEnvironment,
    catcher: MailCatcher,
    task_queue: str,
    journeys: Mapping[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Stack]:
    """A fresh migrated SQLite store and a worker on ``task_queue`` that uses it, on the
    given server and catcher; with ``journeys``, on a copy of journeys/ with those TOML
    changes."""
    with tempfile.TemporaryDirectory() as tmp:
        url = await migrated_sqlite(Path(tmp) / "journeys.db")
        engine = make_engine(url)
        more: dict[str, Any] = {}
        if journeys:
            more["journeys_dir"] = copy_journeys(Path(tmp) / "journeys", **journeys)
        settings = stack_settings(database_url=url, catcher=catcher, task_queue=task_queue, **more)
        try:
            async with running_stack(
                env, settings=settings, sessions=make_session_factory(engine), catcher=catcher
            ) as stack:
                yield stack
        finally:
            await engine.dispose()


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
    """Drive one branch, on a customer of its own (and a store of its own if the branch says
    so), and check how the run ended."""
    # A fresh store and server: ids are free. (Kept short: a long X-Journey header is folded,
    # and testkit.mail.journey_mails then misses the mail; branch names are unique.)
    cid = f"c-{name}".replace("_", "-")
    on: AbstractAsyncContextManager[Stack] = (
        store_stack(stack.env, stack.catcher, f"record-histories-{cid}", branch.journeys)
        if branch.own_store or branch.journeys
        else nullcontext(stack)
    )
    async with on as branch_stack:
        handle = await branch.drive(branch_stack, cid)
        result = await finished(handle)  # while its worker still runs
    outcome = getattr(result, "outcome", None)
    if branch.outcome is not None:
        check(outcome == branch.outcome, f"ended {outcome!r}, not {branch.outcome!r}")
    if branch.sent is not None:
        want = [step.format(cid=cid) for step in branch.sent]
        check(list(result.sent) == want, f"sent {result.sent}, not {want}: {result.decisions}")
    print(f"{journey}/{name}: {_summary(result)}")
    return handle


def _summary(result: Any) -> str:
    if hasattr(result, "outcome"):
        return f"{result.outcome}, sent {result.sent}"
    return repr(result)  # not a journey (the daily sweep): what it returned


async def run_histories(stack: Stack, handle: Handle) -> list[WorkflowHistory]:
    """The histories of every run of the handle's workflow, first to last: one for a journey,
    one per run for a workflow that continued as new (the Replayer takes one run at a time)."""
    runs = [await handle.fetch_history()]  # the handle's run, or the latest if it names none

    async def fetch(run_id: str) -> WorkflowHistory:
        return await stack.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()

    while before := _previous_run(runs[0]):
        runs.insert(0, await fetch(before))
    while after := _next_run(runs[-1]):
        runs.append(await fetch(after))
    return runs


def _previous_run(history: WorkflowHistory) -> str:
    """The run this one continues ("" for the first run)."""
    started = history.events[0].workflow_execution_started_event_attributes
    return str(started.continued_execution_run_id)


def _next_run(history: WorkflowHistory) -> str:
    """The run this one continued as ("" if it ended otherwise)."""
    last = history.events[-1]
    if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
        return ""
    return str(last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


async def record(*, only: set[str], force: bool, dry_run: bool = False) -> list[Path]:
    """Record the branches whose history for the current code version is missing (all of
    them with ``force``); files of other versions are left alone. ``dry_run``: drive and
    check the selected branches, write nothing. A branch that fails is reported, not
    written; the others go on."""
    plan = [
        (journey, name, branch)
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
        for journey, name, branch in plan:
            try:
                handle = await run_branch(stack, journey, name, branch)
            except Exception as exc:
                failed.append(f"{journey}/{name}: {type(exc).__name__}: {exc}")
                print(f"FAILED {failed[-1]}", file=sys.stderr)
                continue
            if dry_run:
                continue
            version = CODE_VERSIONS[journey]
            for stale in HISTORIES.glob(f"{journey}__{name}__run*__v{version}.json"):
                stale.unlink()  # of an earlier recording (--force): the chain may be shorter now
            for run, history in enumerate(await run_histories(stack, handle), start=1):
                target = history_path(journey, name, version, run)
                target.write_text(history.to_json() + "\n")
                written.append(target)
                print(f"  wrote {target.relative_to(ROOT)}")
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
