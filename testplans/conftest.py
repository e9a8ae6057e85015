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
    group.addoption("--prepaid-policy", default=None, metavar="NAME_OR_FILE",
                    help="the prepaid policy the HES runs, which the prepaid plans judge by: a name in "
                         "testplans/prepaid/policies (uppcl, bihar) or a policy YAML (default: the policy the HES "
                         "names in GET /status, else uppcl)")
    group.addoption("--link-limits", default="twin",
                    help="limits the link plans judge by: a profile of testplans/link/limits.yaml (default: twin) "
                         "or FILE.yaml:PROFILE")
    group.addoption("--link-sweep", default="0,30,40,45,48", metavar="DB,DB,...",
                    help="attenuation steps of the link plans, dB (default 0,30,40,45,48: up to near 4G link loss "
                         "on the twin)")
    group.addoption("--link-trials", default=3, type=int,
                    help="reconnect trials at each attenuation step (default 3)")
    group.addoption("--link-2g-trials", default=1, type=int,
                    help="reconnect trials at each attenuation step on 2G in the 2G-against-4G plan (default 1: "
                         "each takes a poll interval)")
    group.addoption("--fleet-limits", default="twin",
                    help="limits the fleet plans judge by: a profile of testplans/fleet/limits.yaml (default: twin) "
                         "or FILE.yaml:PROFILE")
    group.addoption("--tamper-limits", default="twin",
                    help="limits the tamper plans judge by: a profile of testplans/tamper/limits.yaml (default: twin) "
                         "or FILE.yaml:PROFILE")
