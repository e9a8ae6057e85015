"""Run-level Allure files: environment.properties (bench, instruments, meters, versions) and categories.json
(meter failures apart from rig errors and skips)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import allure_commons
from allure_commons import hookimpl
from allure_commons.logger import AllureFileLogger

CATEGORIES = [
    {"name": "Meter out of limits", "matchedStatuses": ["failed"],
     "description": "a measurement of the meter or system under test is outside its limits (FAIL)"},
    {"name": "Bench broken", "matchedStatuses": ["broken"], "messageRegex": "[\\s\\S]*bench broken:[\\s\\S]*",
     "description": "an earlier driver fault latched the bench; the test did not run"},
    {"name": "Rig or instrument error", "matchedStatuses": ["broken"],
     "description": "the rig, a plan or an instrument failed (ERROR); says nothing about the meter"},
    {"name": "Skipped", "matchedStatuses": ["skipped"], "description": "not applicable to this bench or plan"},
]


def _escape(text: str, key: bool = False) -> str:
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char in "=:#!" and key or char == " " and (key or index == 0):
            out.append("\\" + char)
        elif ord(char) > 0x7E or ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else "?")
        else:
            out.append(char)
    return "".join(out)


def environment(run: dict) -> dict[str, str]:
    """The report's environment from run.json's data: bench, every instrument's identity, meters, versions."""
    env = {"bench": f"{run['bench']['name']} ({run['bench']['path']})"}
    if run.get("twin_defects"):
        env["twin.defects"] = str(run["twin_defects"])
    for role, ident in sorted(run.get("instruments", {}).items()):
        env[f"instrument.{role}"] = (f"{ident.get('manufacturer')} {ident.get('model')}, serial {ident.get('serial')}, "
                                     f"firmware {ident.get('firmware')} ({ident.get('driver')} at "
                                     f"{ident.get('resource')})")
    firmware = {role.removeprefix("meter@"): ident.get("firmware")
                for role, ident in run.get("instruments", {}).items() if role.startswith("meter@")}
    for meter in run.get("meters", []):
        env[f"meter.{meter['position']}"] = (f"serial {meter['serial']}, class {meter['accuracy_class']}, firmware "
                                             f"{meter.get('firmware') or firmware.get(str(meter['position'])) or '-'}")
    env["python"] = str(run.get("python"))
    for name, version in sorted(run.get("packages", {}).items()):
        env[f"package.{name}"] = str(version)
    env["git.revision"] = str(run.get("git_revision"))
    env["host"] = str(run.get("host"))
    env["run.start"] = str(run.get("start"))
    if run.get("bench_broken"):
        env["bench.broken"] = str(run["bench_broken"])
    return env


def write_environment(allure_dir: Path, run: dict) -> Path:
    allure_dir.mkdir(parents=True, exist_ok=True)
    path = allure_dir / "environment.properties"
    path.write_text("".join(f"{_escape(key, key=True)}={_escape(value)}\n" for key, value in environment(run).items()),
                    encoding="ascii")
    return path


def write_categories(allure_dir: Path) -> Path:
    allure_dir.mkdir(parents=True, exist_ok=True)
    path = allure_dir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2) + "\n")
    return path


class GuardedFileLogger(AllureFileLogger):
    """Allure's file logger whose failures to write (a full disk) are reported through on_error instead of raised
    into pytest, where they become an INTERNALERROR that ends the run; the run and its safe state go on."""

    def __init__(self, report_dir: Path, on_error: Callable[[str], None]):
        super().__init__(report_dir)
        self.folder = report_dir
        self.on_error = on_error

    def _guarded(self, write: Callable[..., None], *args) -> None:
        try:
            write(*args)
        except OSError as exc:
            self.on_error(f"{self.folder}: Allure results not written: {exc.strerror or exc}")

    @hookimpl
    def report_result(self, result):
        self._guarded(super().report_result, result)

    @hookimpl
    def report_container(self, container):
        self._guarded(super().report_container, container)

    @hookimpl
    def report_attached_file(self, source, file_name):
        self._guarded(super().report_attached_file, source, file_name)

    @hookimpl
    def report_attached_data(self, body, file_name):
        self._guarded(super().report_attached_data, body, file_name)


def guard_result_files(config, on_error: Callable[[str], None]) -> None:
    """Put a GuardedFileLogger in place of allure-pytest's file logger for this session; the original is back in
    place when the session is cleaned up (allure-pytest's own clean-up unregisters it)."""
    for plugin in allure_commons.plugin_manager.get_plugins():
        if type(plugin) is AllureFileLogger:
            guarded = GuardedFileLogger(plugin._report_dir, on_error)
            allure_commons.plugin_manager.unregister(plugin)
            allure_commons.plugin_manager.register(guarded)

            def restore(original=plugin, guarded=guarded) -> None:
                allure_commons.plugin_manager.unregister(guarded)
                allure_commons.plugin_manager.register(original)

            config.add_cleanup(restore)
