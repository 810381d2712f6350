"""Journey definitions: one TOML per journey plus Jinja2 templates under templates/."""

from journeys.config import (
    BrowseConfig,
    CouponConfig,
    FrequencyCap,
    JourneyConfig,
    JourneyConfigError,
    NurtureConfig,
    QuietHours,
    SendRetry,
    StepConfig,
    WelcomeConfig,
    load_journey,
)

__all__ = [
    "BrowseConfig",
    "CouponConfig",
    "FrequencyCap",
    "JourneyConfig",
    "JourneyConfigError",
    "NurtureConfig",
    "QuietHours",
    "SendRetry",
    "StepConfig",
    "WelcomeConfig",
    "load_journey",
]
