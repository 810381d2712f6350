"""Journey definitions: one TOML per journey plus Jinja2 templates under templates/."""

from journeys.config import (
    CouponConfig,
    FrequencyCap,
    JourneyConfig,
    JourneyConfigError,
    SendRetry,
    StepConfig,
    load_journey,
)

__all__ = [
    "CouponConfig",
    "FrequencyCap",
    "JourneyConfig",
    "JourneyConfigError",
    "SendRetry",
    "StepConfig",
    "load_journey",
]
