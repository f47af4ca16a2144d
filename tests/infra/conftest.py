"""Fixtures of the infra tests: the repository root on sys.path and one mock run per example stack."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra_mocks import (
    EXAMPLE_STACKS,
    FleetMocks,
    read_stack_file,
    run_program,
)  # noqa: E402


@pytest.fixture(scope="session")
def example_runs() -> dict[str, tuple[dict[str, Any], FleetMocks]]:
    """Run each example stack once per session, because the tests only read the results."""
    return {
        stack: run_program(stack, read_stack_file(stack)) for stack in EXAMPLE_STACKS
    }


def pytest_configure(config):
    # pulumi_aws 7.51 warns about its own deprecated resources when it is imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
