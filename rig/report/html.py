"""The offline HTML report: Allure 3 (npm package `allure`, no Java) builds one self-contained index.html from
a run's allure-results, tests grouped by epic and feature, with the rig's categories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rig.errors import ConfigError, RigError
from rig.report.allure_files import CATEGORIES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALLURE_CLI_ENV = "RIG_ALLURE_CLI"
BUILD_TIMEOUT_S = 300


def allure_cli(project_root: Path = PROJECT_ROOT) -> Path:
    """The Allure 3 CLI installed by `npm ci` (or the one $RIG_ALLURE_CLI names)."""
    named = os.environ.get(ALLURE_CLI_ENV)
    cli = Path(named) if named else project_root / "node_modules" / ".bin" / "allure"
    if not cli.exists():
        hint = f"${ALLURE_CLI_ENV}" if named else f"run `npm ci` in {project_root} (`make run` does)"
        raise ConfigError(f"Allure 3 CLI not found at {cli}: {hint}")
    if shutil.which("node") is None:
        raise ConfigError("node not found on PATH: the Allure 3 CLI needs Node.js (>= 20)")
    return cli


def report_config(output: Path, name: str) -> dict:
    return {
        "name": name,
        "output": str(output),
        "categories": [{key: value for key, value in rule.items() if key != "description"} for rule in CATEGORIES],
        "plugins": {"awesome": {"options": {"singleFile": True, "reportName": name, "groupBy": ["epic", "feature"],
                                                    "stepTreeExpansion": "expanded"}}},
    }


def build_html(run_folder: Path, output: Path | None = None, name: str | None = None) -> Path:
    """Build the single-file HTML report of run_folder's allure-results into output (default
    run_folder/report); returns the path of its index.html."""
    results = run_folder / "allure-results"
    if not results.is_dir():
        raise ConfigError(f"{run_folder}: no allure-results folder (is it a run folder?)")
    output = (output or run_folder / "report").resolve()
    name = name or f"Meter HIL Rig: {run_folder.resolve().name}"
    cli = allure_cli()
    if output.exists():
        shutil.rmtree(output)
    with tempfile.TemporaryDirectory(prefix="rig-report-") as tmp:
        config = Path(tmp) / "allurerc.json"
        config.write_text(json.dumps(report_config(output, name), indent=2))
        started = time.monotonic()
        try:
            done = subprocess.run([str(cli), "generate", "--config", str(config), "--output", str(output),
                                   str(results.resolve())], cwd=tmp, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, env={**os.environ, "NO_COLOR": "1"})
        except subprocess.TimeoutExpired:
            raise RigError(f"allure generate did not finish within {BUILD_TIMEOUT_S} s for {results}") from None
    index = output / "index.html"
    if done.returncode != 0 or not index.is_file():
        raise RigError(f"allure generate failed for {results} (exit {done.returncode}, "
                       f"{time.monotonic() - started:.1f} s): {(done.stderr or done.stdout).strip()[-2000:]}")
    return index
