"""Run the schemathesis CLI against a served console and say, operation by operation, what
it found (the CLI's own output is long and cut; its JUnit report is complete)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    seconds: float
    operations: int
    failures: dict[str, list[str]]  # operation -> what failed, in short
    seconds_by_operation: dict[str, float]
    tail: str

    def slowest(self, count: int = 5) -> str:
        ranked = sorted(self.seconds_by_operation.items(), key=lambda item: -item[1])
        return ", ".join(f"{op} {seconds:.0f} s" for op, seconds in ranked[:count])

    def report(self) -> str:
        lines = [f"{op}: {', '.join(found)}" for op, found in sorted(self.failures.items())]
        return "\n".join(lines) + "\n---\n" + self.tail


def _short(text: str) -> list[str]:
    found = set()
    for match in re.finditer(r"(ST\d{3}) ([^\n]+)", text):
        found.add(f"{match.group(1)} {match.group(2).strip()}")
    found.update(f"received {m}" for m in re.findall(r"Received: (\d+)", text))
    found.update(
        f"schema of {m}" for m in re.findall(r"response schema for status code (\d+)", text)
    )
    return sorted(found) or [text.strip()[:300]]


def _junit(report_dir: Path) -> tuple[dict[str, float], dict[str, list[str]]]:
    failures: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for path in report_dir.glob("junit*.xml"):
        for case in ET.parse(path).iter("testcase"):
            seconds[case.get("name", "?")] = float(case.get("time") or 0)
            for problem in case:
                if problem.tag in ("failure", "error"):
                    text = (problem.get("message") or "") + "\n" + (problem.text or "")
                    failures.setdefault(case.get("name", "?"), []).extend(_short(text))
    return seconds, failures


def run(
    base_url: str,
    token: str,
    workdir: Path,
    *args: str,
    config: str | None = None,
    timeout: float = 600,
) -> Outcome:
    """`schemathesis run` with the three checks, as the given token; `config` is the text
    of a schemathesis.toml (fixed parameters, per-operation settings)."""
    command = [str(SCHEMATHESIS)]
    if config is not None:
        config_file = workdir / "schemathesis.toml"
        config_file.write_text(config)
        command += ["--config-file", str(config_file)]
    report_dir = workdir / "report"
    command += [
        "run", f"{base_url}/openapi.json", "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS, "--no-color", "--generation-database", "none",
        "--report", "junit", "--report-dir", str(report_dir), *args,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    seconds, failures = _junit(report_dir)
    return Outcome(
        returncode=done.returncode,
        seconds=time.monotonic() - started,
        operations=len(seconds),
        failures=failures,
        seconds_by_operation=seconds,
        tail=done.stdout[-3000:] + done.stderr[-1000:],
    )
