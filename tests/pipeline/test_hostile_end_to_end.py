"""A hostile scenario end to end: attacker text in file names, URLs, threat names and 10,000 IOCs.

The connector runs as `joedefender process -v` against the emulators (real sockets, real logging
setup); afterwards the test reads all four ways such text leaves it: the comments Defender holds,
the indicators Defender holds, `joedefender status` (overview and each alert), and the log. None
may carry a control, bidi or zero-width character, a forged line, or an unbounded value; no
private, internal or shared value may be an indicator, and every refusal is in the history."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from typing import Any

from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

ESCAPES = "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07\x1b[2J"
BIDI = "\u202e\u2066\u200b\ufeff"
FAKE = "Joe Sandbox: CLEAN (score 1/100)"
FILE_NAME = f"invoice{BIDI}fdp.exe" + " " * 200 + FAKE + ESCAPES
PATH = "C:\\Users\\x\\Downloads\\" + FILE_NAME
THREAT = f"Emotet{ESCAPES}{BIDI}" + " " * 200 + FAKE
PHISHING = "http://evil.example\\@microsoft.com/"
LONG_URL = f"http://long.evil.example/{ESCAPES}{BIDI}" + "a" * 20_000
TOO_LONG_URL = "http://too.long.evil.example/" + "b" * 100_000
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PAYLOAD_SHA = hashlib.sha256(b"payload bytes").hexdigest()
GOOD = {
    ("FileSha256", PAYLOAD_SHA),
    ("DomainName", "c2.evil.example"),
    ("IpAddress", "185.195.25.79"),
    ("Url", "http://c2.evil.example/gate.php"),
    ("Url", "http://evil.example/@microsoft.com/"),  # the phishing sample itself, as the browser read it
}
# The review's cases, as domain, IP and URL IOCs; each yields many values below.
HOSTILE_DOMAINS = [
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "co.uk",
    "github.io",
    "github.com",
    "raw.githubusercontent.com",
    "discord.com",
    "corp.local",
    "intranet",
    f"c2{BIDI}.evil.example",
]
HOSTILE_IPS = ["2002:a00:1::", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "::ffff:10.0.0.1", "64:ff9b::a00:1"]
HOSTILE_URLS = ["http://127.1/", "http://0x7f.0.0.1/", "http://user:pw@c2.evil.example/",
                f"http://c2.evil.example/{BIDI}", "http://c2.evil.example:99999/", PHISHING,
                f"http://c2.evil.example/{ESCAPES}"]  # fmt: skip
REASONS = ("private or reserved IP", "IPv6 carrying a private or reserved IPv4", "public suffix", "shared platform",
           "internal or single-label name", "known-benign hash", "URL with credentials",
           "control, format or blank characters", "URL with an invalid port", "URL with a backslash")  # fmt: skip


def _iocs() -> dict[str, list[dict[str, Any]]]:
    domains = [f"h{i}.corp.local" for i in range(3000)] + [f"10.{i // 250}.{i % 250}.9" for i in range(1500)]
    ips = [f"0x7f.{i // 250}.{i % 250}" for i in range(2000)] + [f"2002:a00:{i:x}::" for i in range(1000)]
    urls = [f"http://u{i}:p@c2.evil.example/" for i in range(1000)] + [f"http://h{i}.github.com/x" for i in range(1500)]
    domains += [*HOSTILE_DOMAINS, "c2.evil.example"]
    ips += [*HOSTILE_IPS, "185.195.25.79"]
    urls += [*HOSTILE_URLS, "http://c2.evil.example/gate.php"]
    return {
        "domains": [{"value": v, "malicious": True} for v in domains],
        "ips": [{"value": v, "malicious": True} for v in ips],
        "urls": [{"value": v, "malicious": True} for v in urls],
        "dropped": [{"sha256": EMPTY_SHA256, "name": "empty.txt", "malicious": True}],
    }


def _world(make_world: WorldFactory) -> tuple[World, list[str]]:
    url_alerts = [
        alert(n, 1, {"entityType": "Url", "url": url}, threat=THREAT)
        for n, url in ((2, PHISHING), (3, LONG_URL), (4, TOO_LONG_URL))
    ]
    alerts = [alert(1, 1, file_evidence("payload", PATH), threat=THREAT), *url_alerts]
    iocs = _iocs()
    assert sum(len(v) for v in iocs.values()) >= 10_000
    verdicts = [
        {"sample": "payload", "detection": "malicious", "score": 97, "threatname": THREAT, "iocs": iocs},
        {"url": "http://evil.example/@microsoft.com/", "detection": "malicious", "score": 88, "threatname": THREAT},
    ]
    raw = world(
        samples={"payload": "payload bytes"},
        machines=[machine(1, files={PATH: "payload"})],
        alerts=alerts,
        verdicts=verdicts,
    )
    w = make_world(scenario(raw), DefenderIndicatorsEnabled="true", DefenderIndicatorMaxPerSample="500")
    return w, [a["id"] for a in alerts]


def _run(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    scale = ("--time-scale", str(w.scenario.time_scale)) if args[0] == "process" else ()
    return subprocess.run(
        joedefender(*args, *scale), env=environment(w.values), capture_output=True, text=True, timeout=240, check=False
    )


def _safe(text: str, where: str) -> None:
    bad = UNSAFE.search(text)
    assert bad is None, (
        f"{where}: U+{ord(bad.group()):04X} at {bad.start()}: {text[max(0, bad.start() - 60) :][:120]!r}"
    )


def test_a_hostile_scenario_leaves_nothing_unsafe_in_comments_indicators_status_or_logs(
    make_world: WorldFactory,
) -> None:
    w, alert_ids = _world(make_world)
    done = _run(w, "process", *alert_ids, "-v")
    assert done.returncode in (0, 1), done.stderr[-3000:]

    # Comments: one line per fact, no fake verdict line, no padding, nothing hidden.
    comments = {a: w.comments(a) for a in alert_ids}
    for alert_id in alert_ids[:3]:
        [text] = comments[alert_id]
        _safe(text, f"comment on {alert_id}")
        lines = text.splitlines()
        assert [line for line in lines if line.startswith("Joe Sandbox:")] == [lines[0]]
        assert FAKE not in lines[0]
        assert all("  " not in line for line in lines)
        assert len(text) < 4000
    phishing = comments[alert_ids[1]][0]
    assert phishing.startswith("Joe Sandbox: MALICIOUS (score 88/100)")  # not microsoft.com's verdict
    assert "URL: http://evil.example/@microsoft.com/" in phishing
    assert [s["url"] for s in w.submissions() if s.get("url") and "microsoft" in s["url"]] == [
        "http://evil.example/@microsoft.com/"  # the validated URL is what Joe analysed
    ]
    assert comments[alert_ids[3]] == []  # the 100,000-character URL is refused at triage...

    # Indicators: only the attacker's own infrastructure, in canonical form; texts safe and bounded.
    ours = [i for i in w.defender("/_emulator/indicators") if i.get("application") == "joedefender"]
    assert {(i["indicatorType"], i["indicatorValue"]) for i in ours} == GOOD
    for item in ours:
        for key in ("title", "description", "indicatorValue"):
            _safe(item[key], f"indicator {key}")
        assert len(item["title"]) <= 200
        assert len(item["description"]) <= 1000

    # Status: the overview and each alert, every field escaped; bounded.
    outputs = [_run(w, "status"), *(_run(w, "status", a) for a in alert_ids)]
    for output in outputs:
        assert output.returncode == 0, output.stderr
        _safe(output.stdout, "status")
        assert len(output.stdout) < 100_000
    detail = outputs[4].stdout
    assert "longer" in detail or "characters" in detail  # ...with its reason in the alert's history

    # Every refusal is in the sample's history with its reason.
    with w.connector() as connector:
        history = " ".join(e.detail for e in connector.store.history(f"sha256:{PAYLOAD_SHA}"))
    _safe(history, "history")
    for reason in REASONS:
        assert reason in history, reason

    # The log: every line of it safe, none starting with attacker text.
    _safe(done.stderr, "log")
    assert "joedefender.pipeline" in done.stderr
    assert not any(line.lstrip().startswith(FAKE) for line in done.stderr.splitlines())
