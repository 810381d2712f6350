"""Journey TOMLs as the starter, the worker and the schedule use them: loaded and validated
(``load_journey``), kept until the file changes, delays divided by JOURNEY_SPEEDUP."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Protocol, overload

from pydantic import BaseModel, ConfigDict, ValidationError

from journeys.config import (
    Config,
    FrequencyCap,
    JourneyConfig,
    JourneyConfigError,
    TouchBudget,
    load_journey,
)


class JourneyConfigs(Protocol):
    """Whatever hands out journey configs by name (the loader, or the starter's API)."""

    def config(self, name: str, model: type[Config]) -> Config: ...


class JourneyLoader:
    """``config("cart_recovery")``: ``<journeys_dir>/cart_recovery.toml``, reloaded when the
    file changes (an edit reaches new runs without a restart), with ``speedup`` applied."""

    def __init__(self, journeys_dir: Path, *, speedup: float = 1.0) -> None:
        self._dir = journeys_dir
        self._speedup = speedup
        # per name: the mtimes of its TOML and of lifecycle.toml, and the config as handed out
        self._cache: dict[str, tuple[tuple[float, float], JourneyConfig]] = {}

    @overload
    def config(self, name: str) -> JourneyConfig: ...

    @overload
    def config(self, name: str, model: type[Config]) -> Config: ...

    def config(self, name: str, model: type[JourneyConfig] = JourneyConfig) -> JourneyConfig:
        # Both files' mtimes are the key: an edit of either reaches the next call, and the
        # ingest path (every event) does not parse lifecycle.toml again each time.
        mtimes = (_mtime(self._dir / f"{name}.toml"), _mtime(self._dir / "lifecycle.toml"))
        cached = self._cache.get(name)
        if cached is None or cached[0] != mtimes or not isinstance(cached[1], model):
            loaded = load_journey(name, self._dir, model)
            cached = (mtimes, with_stage_caps(loaded, self._dir).sped_up(self._speedup))
            self._cache[name] = cached
        config = cached[1]
        assert isinstance(config, model)
        return config


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return -1.0


def with_stage_caps(config: JourneyConfig, journeys_dir: Path) -> JourneyConfig:
    """``config`` with what ``<journeys_dir>/lifecycle.toml`` says of each lifecycle stage
    (core/lifecycle.py): its cap ([cadence.<stage>]) and its touch budget ([budget.<stage>],
    ``care_journeys``); the gate uses those of the customer's stage."""
    stages = _stages(journeys_dir)
    update: dict[str, object] = {}
    if stages.cadence:
        update["stage_caps"] = stages.cadence
    if stages.budget:
        update["stage_budgets"] = stages.budget
        update["care_journeys"] = stages.care_journeys
    return config.model_copy(update=update) if update else config


class _ByStage(BaseModel):
    """The parts of lifecycle.toml a journey carries (the file is validated whole by
    core.lifecycle.load_lifecycle)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cadence: dict[str, FrequencyCap] = {}
    budget: dict[str, TouchBudget] = {}
    care_journeys: tuple[str, ...] = ()


def _stages(journeys_dir: Path) -> _ByStage:
    path = journeys_dir / "lifecycle.toml"
    if not path.is_file():
        return _ByStage()
    try:
        return _ByStage.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise JourneyConfigError(f"{path}: {exc}") from exc
