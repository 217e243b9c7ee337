"""The input limits are named once (schemas/limits.py) and the README's table says the same."""

from __future__ import annotations

from pathlib import Path

from salepulse.schemas import limits
from salepulse.streams.platform.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_quotes_every_limit() -> None:
    for what, accepted in limits.LIMITS.items():
        assert f"| {what} | {accepted} |" in README, f"README's input limits table lacks {what!r}"


def test_the_window_settings_default_to_the_named_limits() -> None:
    settings = Settings.from_env({})
    assert settings.event_max_age_s * 1000 == limits.DEFAULT_MAX_EVENT_AGE_MS
    assert settings.event_max_lead_s * 1000 == limits.DEFAULT_MAX_EVENT_LEAD_MS
    assert Settings.from_env({"SALEPULSE_EVENT_TIME_WINDOW": "off"}).event_time_window is False
    for variable in ("SALEPULSE_READ_TOKEN", "SALEPULSE_EVENT_TIME_WINDOW", "SALEPULSE_EVENT_MAX_AGE_S"):
        assert f"`{variable}`" in README
