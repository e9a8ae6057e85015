"""Options of the test plans (plugin options such as --bench come from the rig's pytest plugin)."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rig plans")
    group.addoption("--accuracy-plan", default=str(HERE / "accuracy" / "plan.yaml"),
                    help="accuracy plan YAML: method, limits file per class (default testplans/accuracy/plan.yaml)")
    group.addoption("--prepaid-limits", default="twin",
                    help="limits the prepaid plans judge by: a profile of testplans/prepaid/limits.yaml "
                         "(default: twin) or FILE.yaml:PROFILE")
