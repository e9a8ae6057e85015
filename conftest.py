"""Root conftest: the rig's plugin comes from the installed package (pytest11 entry point)."""

from importlib import metadata

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("rig"):
        try:
            metadata.version("meter-hil-rig")
        except metadata.PackageNotFoundError:
            raise pytest.UsageError("meter-hil-rig is not installed in this environment: run `make test` "
                                    "(it creates .venv and installs the project)") from None
