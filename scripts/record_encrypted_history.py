"""Record one history with payloads encrypted, for tests/test_replay.py to replay with the codec.

    uv run python scripts/record_encrypted_history.py            # cart_recovery/full_path
    uv run python scripts/record_encrypted_history.py --force    # re-record it

Drives a branch of scripts/record_histories.py (the same stack: dev server with time
skipping, SMTP catcher, migrated SQLite store, worker from worker.py) with every process's
data converter encrypting (core/codec.py) under ``TEST_ONLY_PAYLOAD_KEYS`` below, and writes
the run's history to ``tests/histories/encrypted/<journey>__<branch>__v<N>.json``. The key is
a fixed test-only key, committed on purpose so the replay test can decrypt; it protects
nothing and is never a deployment's key.
"""

# ruff: noqa: E402  (the repo root goes on sys.path before the project's imports)

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from record_histories import BRANCHES, CODE_VERSIONS, run_branch, run_histories
from temporalio.client import Client

from devstack.catcher import MailCatcher
from starter.client import data_converter
from store.db import make_engine, make_session_factory
from testkit.databases import migrated_sqlite
from testkit.servers import start_time_skipping_server
from testkit.stack import running_stack, stack_settings

# Test-only: also in tests/test_replay.py, which decrypts the recorded history with it.
TEST_ONLY_PAYLOAD_KEYS = (
    "replay-test:" + base64.b64encode(b"replay-test-only-key-not-secret!").decode()
)
ENCRYPTED = ROOT / "tests" / "histories" / "encrypted"


async def record(journey: str, branch_name: str, *, force: bool) -> Path:
    version = CODE_VERSIONS[journey]
    target = ENCRYPTED / f"{journey}__{branch_name}__v{version}.json"
    if target.exists() and not force:
        raise SystemExit(f"{target.relative_to(ROOT)} exists (--force re-records it)")
    branch = BRANCHES[journey][branch_name]
    if branch.own_store or branch.journeys:
        raise SystemExit("a branch on a store of its own is not supported here")
    env = await start_time_skipping_server()
    catcher = MailCatcher().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = await migrated_sqlite(Path(tmp) / "journeys.db")
            engine = make_engine(url)
            settings = stack_settings(
                database_url=url,
                catcher=catcher,
                task_queue="record-encrypted",
                payload_keys=TEST_ONLY_PAYLOAD_KEYS,
            )
            client = await Client.connect(
                env.client.service_client.config.target_host,
                namespace=env.client.namespace,
                data_converter=data_converter(settings),
            )
            try:
                async with running_stack(
                    env,
                    settings=settings,
                    sessions=make_session_factory(engine),
                    catcher=catcher,
                    client=client,
                ) as stack:
                    handle = await run_branch(stack, journey, branch_name, branch)
                    [history] = await run_histories(stack, handle)
            finally:
                await engine.dispose()
    finally:
        catcher.stop()
        await env.shutdown()
    ENCRYPTED.mkdir(parents=True, exist_ok=True)
    target.write_text(history.to_json() + "\n")
    print(f"wrote {target.relative_to(ROOT)}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--journey", default="cart_recovery")
    parser.add_argument("--branch", default="full_path")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    asyncio.run(record(args.journey, args.branch, force=args.force))


if __name__ == "__main__":
    main()
