"""Verdict actions at volume: how many import calls 200 malicious samples cost, and whether any 429s.

Builds a tenant with S malicious samples Joe already knows (so no collection is needed), each
with N network IOCs of its own (domains, public IPs, URLs), and one alert per sample. Runs the
connector with indicators on against the emulators (the documented rate limits ON: imports 30 a
minute, 500 per call) and reports import calls, lookups, 429s, indicators created and time.
The target: at most ceil(S * (N + 1) / 500) + a small constant import calls, and no 429.

    .venv/bin/python -m bench.indicators --json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common import process_all
from joedefender.settings import Settings
from joedefender_emulators.runner import Emulators
from joedefender_emulators.scenario import parse_scenario

MACHINE = "ab" * 20


def _iocs(n: int, count: int) -> dict[str, Any]:
    """`count` network IOCs of sample `n`, all malicious, public and distinct across samples."""
    kinds = [k % 3 for k in range(count)]
    return {
        "domains": [{"value": f"c2-{n}-{k}.bench-evil.net", "malicious": True} for k, x in enumerate(kinds) if x == 0],
        "ips": [
            {"value": f"45.{n // 200}.{n % 200}.{k + 1}", "malicious": True} for k, x in enumerate(kinds) if x == 1
        ],
        "urls": [
            {"value": f"http://dl-{n}.bench-evil.net/p{k}.bin", "malicious": True}
            for k, x in enumerate(kinds)
            if x == 2
        ],
    }


def build(samples: int, iocs: int, time_scale: float) -> dict[str, Any]:
    return {
        "name": "bench-indicators",
        "time_scale": time_scale,
        "samples": {f"s{n}": {"text": f"bench indicator sample {n}"} for n in range(samples)},
        "defender": {
            "machines": [{"id": MACHINE, "computerDnsName": "ws-1.bench.test"}],
            "alerts": [
                {
                    "id": f"da63864{n:013d}_{n}",
                    "severity": "High",
                    "status": "New",
                    "detectionSource": "WindowsDefenderAtp",
                    "title": "bench",
                    "machineId": MACHINE,
                    "lastUpdateTime": "2026-11-27T08:00:00Z",
                    "evidence": [
                        {"entityType": "File", "$sample": f"s{n}", "fileName": f"s{n}.exe", "filePath": "C:\\u"}
                    ],
                }
                for n in range(samples)
            ],
        },
        "joe": {
            "analyses": [
                {"sample": f"s{n}", "detection": "malicious", "score": 90, "age_days": 1, "iocs": _iocs(n, iocs)}
                for n in range(samples)
            ]
        },
    }


def run(samples: int, iocs: int, time_scale: float, workers: int) -> dict[str, Any]:
    scenario = parse_scenario(build(samples, iocs, time_scale))
    with tempfile.TemporaryDirectory() as folder, Emulators(scenario) as emulators:
        settings = Settings.from_mapping(
            emulators.settings()
            | {
                "StatePath": str(Path(folder) / "bench.db"),
                "Workers": str(workers),
                "JoeSandboxResubmit": "false",
                "DefenderIndicatorsEnabled": "true",
            }
        )
        elapsed = process_all(scenario, settings, time_scale, workers)
        with httpx.Client(verify=emulators.certificates.client_context()) as http:
            calls = http.get(f"{emulators.defender.url}/_emulator/calls").json()
            indicators = http.get(f"{emulators.defender.url}/_emulator/indicators").json()
            indicators = indicators["value"] if isinstance(indicators, dict) else indicators
    expected = samples * (iocs + 1)
    return {
        "samples": samples,
        "iocs_per_sample": iocs,
        "indicators_expected": expected,
        "indicators_created": len({(i["indicatorType"], i["indicatorValue"]) for i in indicators}),
        "import_calls": calls.get("indicators.import", {}).get("calls", 0),
        "import_call_bound": math.ceil(expected / 500),
        "lookup_calls": calls.get("indicators.list", {}).get("calls", 0),
        "defender_429s": sum(v["throttled"] for v in calls.values()),
        "seconds": round(elapsed, 2),
        "time_scale": time_scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--iocs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--time-scale", type=float, default=0.002)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="Print one JSON object (the medians and every run).")
    args = parser.parse_args()
    runs = [run(args.samples, args.iocs, args.time_scale, args.workers) for _ in range(args.runs)]
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    medians = {k: statistics.median(r[k] for r in runs) for k in numeric}
    if args.json:
        print(json.dumps({"median": medians, "runs": runs}, indent=2))
    else:
        for key, value in medians.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
