"""What a run publishes once its record is complete: Allure metadata, accuracy certificates, the history database.

A publisher is anything with a `name`, a `needs_whole_record` flag and `publish(folder, record) -> str | None`
(a line for the run's summary). The session runs each in turn after run.json is complete; one that fails is
reported and the others still run. A lab adds its own (a LIMS upload, a copy to a share) with
`rig_session(config).publishers.append(...)` in a conftest, or by replacing the list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from rig.certificate import write_certificates
from rig.history import append_run_folder, history_path
from rig.report.allure_files import write_categories, write_environment


class Publisher(Protocol):
    name: str
    needs_whole_record: bool  # made only from a run whose records were all written

    def publish(self, folder: Path, record: dict) -> str | None: ...


class AllureMetadata:
    """environment.properties (bench, instruments, meters, versions) and categories.json in the run's Allure
    results (run.json's `allure_results`)."""

    name = "Allure metadata"
    needs_whole_record = False

    def publish(self, folder: Path, record: dict) -> str | None:
        allure_dir = Path(record["allure_results"])
        write_environment(allure_dir, record)
        write_categories(allure_dir)
        return None


class Certificates:
    """An accuracy certificate (HTML, PDF) per meter the accuracy plan measured."""

    name = "certificates"
    needs_whole_record = True

    def publish(self, folder: Path, record: dict) -> str | None:
        written = write_certificates(folder)
        return f"certificates: {folder / 'certificates'} ({len(written) // 2} meter(s))" if written else None


class History:
    """The run appended to the history database beside the run folders."""

    name = "history"
    needs_whole_record = True

    def publish(self, folder: Path, record: dict) -> str | None:
        try:
            database, run_id = append_run_folder(folder)
        except Exception as exc:
            raise RuntimeError(f"{history_path(folder)} not updated: {exc!r}; add the run later with "
                               f"`rig history --add {folder}`") from exc
        return f"history: {database} (run {run_id})"


def default_publishers() -> list[Publisher]:
    return [AllureMetadata(), Certificates(), History()]
