"""One alert in a quiet world: how much the connector adds to the services' own time, step by step.

One machine carries one file; one alert names it and arrives as a bare id (as the webhook or the
CLI delivers it). The connector runs against the emulators (rate limits on) and the job's history
gives when each step ended. A step's overhead is its duration less the service time it waited
for (the live response action: pending + command seconds; the analysis: Joe's queue + analysis
seconds), in emulated seconds. Two worlds: every service time zero (on a real-time clock), and
the emulators' default service times (on a scaled clock, `--time-scale`).

    .venv/bin/python -m bench.latency --json
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import command_line, process_all, report
from joedefender.adapters.sqlite import SqliteStore
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

_PATH = "C:\\Users\\u\\Downloads\\quiet.exe"
_MACHINE = "1" * 40
_ALERT = "da638640000000000001_1"
# (subject, step, outcome) of each step's end, in order; the alert's own lines and the job's.
_MARKS = (
    ("alert", "intake", "received"),
    ("alert", "triage", "accepted"),
    ("job", "lookup", "analyse"),
    ("job", "collect", "started"),
    ("job", "collect", "collected"),
    ("job", "submit", "submitted"),
    ("job", "analysis", "finished"),
    ("alert", "write-back", "commented"),
)
_STEPS = ("triage", "lookup", "start collection", "live response", "submission", "analysis", "write-back")


def _world(time_scale: float, service: dict[str, float]) -> dict[str, Any]:
    return {
        "name": "quiet",
        "time_scale": time_scale,
        "samples": {"quiet": {"text": "one quiet sample"}},
        "defender": {
            "machines": [
                {"id": _MACHINE, "computerDnsName": "ws-1.quiet.test", "files": [{"path": _PATH, "sample": "quiet"}]}
            ],
            "alerts": [
                {
                    "id": _ALERT,
                    "severity": "High",
                    "status": "New",
                    "detectionSource": "WindowsDefenderAtp",
                    "title": "quiet",
                    "machineId": _MACHINE,
                    "lastUpdateTime": "2026-11-27T08:00:00Z",
                    "evidence": [
                        {
                            "entityType": "File",
                            "$sample": "quiet",
                            "fileName": "quiet.exe",
                            "filePath": "C:\\Users\\u\\Downloads",
                        }
                    ],
                }
            ],
            "live_response": {"pending_seconds": service["pending"], "command_seconds": service["command"]},
        },
        "joe": {
            "queue_seconds": service["queue"],
            "analysis_seconds": service["analysis"],
            "verdicts": [{"sample": "quiet", "detection": "malicious", "score": 90}],
        },
    }


def run_once(time_scale: float, service: dict[str, float]) -> dict[str, Any]:
    scenario = parse_scenario(_world(time_scale, service))
    with tempfile.TemporaryDirectory() as folder, Emulators(scenario) as emulators:
        state = Path(folder) / "latency.db"
        settings = Settings.from_mapping(emulators.settings() | {"StatePath": str(state), "Workers": "4"})
        process_all(scenario, settings, time_scale, 4)
        store = SqliteStore(state)
        try:
            (job,) = store.list("job")
            lines = {"alert": store.history(f"alert:{_ALERT}"), "job": store.history(job.key)}
        finally:
            store.close()
    marks = []
    for subject, step, outcome in _MARKS:
        at = next(h.at for h in lines[subject] if (h.step, h.outcome) == (step, outcome))
        marks.append(at / time_scale)
    waited = {
        "live response": service["pending"] + service["command"],
        "analysis": service["queue"] + service["analysis"],
    }
    overhead = {
        step: round(end - start - waited.get(step, 0.0), 3)
        for step, start, end in zip(_STEPS, marks[:-1], marks[1:], strict=True)
    }
    own = sum(waited.values())
    total = marks[-1] - marks[0]
    return {
        "time_scale": time_scale,
        "service_s": round(own, 1),
        "intake_to_comment_s": round(total, 2),
        "overhead_s": overhead | {"total": round(total - own, 2)},
        "overhead_ratio": round((total - own) / own, 3) if own else None,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose total overhead is the median, with every run's total beside it."""
    ordered = sorted(runs, key=lambda r: r["overhead_s"]["total"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["total_overhead_each_run_s"] = [r["overhead_s"]["total"] for r in runs]
    chosen["runs"] = len(runs)
    chosen["median_total_overhead_s"] = statistics.median(r["overhead_s"]["total"] for r in runs)
    return chosen


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per world; the median is shown")
    parser.add_argument("--time-scale", type=float, default=0.1, help="the clock of the default-times world")
    args = parser.parse_args()
    zero = {"pending": 0.0, "command": 0.0, "queue": 0.0, "analysis": 0.0}
    default = {"pending": 5.0, "command": 10.0, "queue": 30.0, "analysis": 300.0}
    result = {
        "zero_service_times": _median([run_once(1.0, zero) for _ in range(args.runs)]),
        "default_service_times": _median([run_once(args.time_scale, default) for _ in range(args.runs)]),
    }
    report(result, args)


if __name__ == "__main__":
    main()
