"""schemathesis over the API's own OpenAPI schema, against the live server (uvicorn on a free
port, the real dev server, catcher and store behind): thousands of generated requests, valid
and invalid by the schema, with the write key (Basic or Bearer), a wrong one and none.
Whatever arrives, the answer is never a 5xx (Segment's libraries retry those forever)."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from starter.http import create_app
from testkit.data import add_customer
from testkit.live_api import serving
from testkit.stack import WRITE_KEY

KNOWN = "schemathesis-known"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
AUTH: dict[str, dict[str, str]] = {
    "basic": {"Authorization": f"Basic {BASIC}"},
    "bearer": {"Authorization": f"Bearer {WRITE_KEY}"},
    "wrong": {"Authorization": "Bearer not-the-key"},
    "none": {},
}
# Examples per operation and mode: most where the bodies are. (For a path's token nothing
# is invalid by the schema, so those operations have no negative examples.)
INGESTION = {"/v1/identify", "/v1/track", "/v1/batch"}
MANY = {GenerationMode.POSITIVE: 400, GenerationMode.NEGATIVE: 250}
FEW = {GenerationMode.POSITIVE: 120, GenerationMode.NEGATIVE: 80}


class Fuzz:
    """Sends generated cases to ``base_url``; counts answers by status, keeps the 5xx."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []

    def operation(self, operation: Any, mode: GenerationMode, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests on every run: a failure reproduces
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode), auth=st.sampled_from(sorted(AUTH)))
        def send(case: Any, auth: str) -> None:
            headers = {k: v for k, v in (case.headers or {}).items() if k != "Authorization"}
            case.headers = {**headers, **AUTH[auth]}
            answer = case.call(base_url=self.base_url, session=self.session, timeout=30)
            self.statuses[answer.status_code] += 1
            # /healthz answers 503 by design when a part it checks is down or slow (on a
            # loaded machine the Temporal probe can time out): that is its message, not a crash.
            health_says_down = operation.path == "/healthz" and answer.status_code == 503
            if answer.status_code >= 500 and not health_says_down:
                self.failures.append(
                    f"{operation.label} ({mode.value}, {auth}): {answer.status_code} "
                    f"{answer.text[:300]}\n  {case.as_curl_command()}"
                )

        try:
            send()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label


def _fuzz(spec: dict[str, Any], base_url: str) -> Counter[int]:
    schema = schemathesis.openapi.from_dict(spec)
    with requests.Session() as session:
        fuzz = Fuzz(base_url, session)
        for path, methods in spec["paths"].items():
            for method in methods:
                for mode, examples in (MANY if path in INGESTION else FEW).items():
                    fuzz.operation(schema[path][method.upper()], mode, examples)
    assert not fuzz.failures, "\n".join(fuzz.failures[:10])
    return fuzz.statuses


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
# Hundreds of generated requests: minutes on a loaded machine (what it checks is the
# answers, not their speed).
@pytest.mark.timeout(1200)
async def test_generated_requests_over_the_openapi_schema_never_get_a_5xx(stack):
    await add_customer(stack, KNOWN)
    app = create_app(stack.settings, journeys=stack.journeys)
    async with serving(app) as url:
        statuses = await asyncio.to_thread(_fuzz, app.openapi(), url)
    assert sum(statuses.values()) >= 3000, statuses
    assert {200, 401, 404, 422} <= set(statuses), statuses
