"""How fast alerts become enriched alerts, and what it costs in API calls.

Builds a tenant of M machines and S distinct samples spread over A alerts (so each sample is
shared by about A/S alerts on several machines), runs the connector on the embedded default
against the emulators with the documented rate limits ON, and reports: time from intake to the
last comment, comments, live response actions, Joe submissions, and Defender calls and 429s per
endpoint. The emulators run on a scaled clock (`--time-scale`); the connector's waits scale with it.

    .venv/bin/python -m bench.pipeline_throughput --alerts 200 --samples 20 --machines 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common import process_all
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario


def build(alerts: int, samples: int, machines: int, time_scale: float) -> dict[str, Any]:
    machine_ids = [f"{n + 1:040x}" for n in range(machines)]
    path = "C:\\Users\\u\\Downloads\\s{}.exe"
    return {
        "name": "bench",
        "time_scale": time_scale,
        "samples": {f"s{n}": {"text": f"bench sample {n}"} for n in range(samples)},
        "defender": {
            "machines": [
                {
                    "id": mid,
                    "computerDnsName": f"ws-{i}.bench.test",
                    "files": [{"path": path.format(n), "sample": f"s{n}"} for n in range(samples)],
                }
                for i, mid in enumerate(machine_ids)
            ],
            "alerts": [
                {
                    "id": f"da63864{a:013d}_{a}",
                    "severity": "High",
                    "status": "New",
                    "detectionSource": "WindowsDefenderAtp",
                    "title": "bench",
                    "machineId": machine_ids[a % machines],
                    "lastUpdateTime": "2026-11-27T08:00:00Z",
                    "evidence": [
                        {
                            "entityType": "File",
                            "$sample": f"s{a % samples}",
                            "fileName": f"s{a % samples}.exe",
                            "filePath": "C:\\Users\\u\\Downloads",
                        }
                    ],
                }
                for a in range(alerts)
            ],
        },
        "joe": {"verdicts": [{"sample": f"s{n}", "detection": "malicious", "score": 90} for n in range(samples)]},
    }


def run(alerts: int, samples: int, machines: int, time_scale: float, workers: int) -> dict[str, Any]:
    scenario = parse_scenario(build(alerts, samples, machines, time_scale))
    with tempfile.TemporaryDirectory() as folder, Emulators(scenario) as emulators:
        settings = Settings.from_mapping(
            emulators.settings() | {"StatePath": str(Path(folder) / "bench.db"), "Workers": str(workers)}
        )
        elapsed = process_all(scenario, settings, time_scale, workers)
        with httpx.Client(verify=emulators.certificates.client_context()) as http:
            calls = http.get(f"{emulators.defender.url}/_emulator/calls").json()
            comments = sum(
                len(a.get("comments") or [])
                for a in http.get(f"{emulators.defender.url}/_emulator/alerts").json()["value"]
            )
            submissions = len(http.get(f"{emulators.joe.url}/_emulator/submissions").json())
    actions = calls.get("liveresponse.run", {}).get("calls", 0)
    return {
        "alerts": alerts,
        "samples": samples,
        "machines": machines,
        "workers": workers,
        "time_scale": time_scale,
        "seconds": round(elapsed, 2),
        "alerts_per_second": round(alerts / elapsed, 1),
        "comments": comments,
        "live_response_actions": actions,
        "joe_submissions": submissions,
        "defender_calls": sum(v["calls"] for v in calls.values()),
        "defender_429s": sum(v["throttled"] for v in calls.values()),
        "calls_per_endpoint": {k: v["calls"] for k, v in calls.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--time-scale", type=float, default=0.002)
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    args = parser.parse_args()
    result = run(args.alerts, args.samples, args.machines, args.time_scale, args.workers)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
