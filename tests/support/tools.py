"""Skip-or-fail for tests that need an external tool."""

from __future__ import annotations

import os

import pytest

REQUIRE_TOOLS = os.environ.get("IMAGESYNC_REQUIRE_TOOLS", "") in {"1", "true", "yes"}


def missing_tool(reason: str):
    """Skip on a developer's laptop when a tool is missing; fail when IMAGESYNC_REQUIRE_TOOLS=1
    (set by .ci/run), so CI never passes with skipped tests."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (IMAGESYNC_REQUIRE_TOOLS is set, so this is an error)")
    pytest.skip(reason)
