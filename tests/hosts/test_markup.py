"""Defender's and Joe's strings are data: Rich markup in any of them prints as itself, never styles,
links or hides anything, and never stops `process` or `status` with a MarkupError."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.hosts import environment, joedefender
from tests.pipeline.builders import alert, file_evidence, machine, world
from tests.world import World, scenario

WorldFactory = Callable[..., World]

_CLOSING = "http://evil.example/[/x]"  # a closing tag with nothing open: MarkupError
_LINK = "[link=https://evil.example/]click[/link]"
_HIDDEN = "[black on black]hidden[/black on black]"
_PATH = f"C:\\Users\\{_HIDDEN}\\{_LINK}.exe"


def _cli(*args: str, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        joedefender(*args), env=environment(settings), capture_output=True, text=True, timeout=90, check=False
    )


def test_markup_in_every_defender_string_prints_as_text(make_world: WorldFactory) -> None:
    url_alert = alert(1, 1, {"entityType": "Url", "url": _CLOSING}, threat=_HIDDEN)
    url_alert["title"] = _LINK
    file_alert = alert(2, 1, file_evidence("dropper", _PATH), threat=_LINK)
    file_alert["title"] = _HIDDEN
    # not on disk: the failure reason quotes the path
    missing = alert(3, 1, file_evidence("absent", f"C:\\{_HIDDEN}\\{_LINK}\\gone[/x].exe"))
    raw = world(
        samples={"dropper": "dropper bytes", "absent": "never on disk"},
        machines=[machine(1, files={_PATH: "dropper"}, computerDnsName=f"{_HIDDEN}.contoso.test")],
        alerts=[url_alert, file_alert, missing],
        verdicts=[
            {"sample": "dropper", "detection": "malicious", "score": 87, "threatname": _HIDDEN},
            {"url": _CLOSING, "detection": "suspicious", "score": 55, "threatname": _LINK},
        ],
    )
    w = make_world(scenario(raw))
    ids = [str(a["id"]) for a in (url_alert, file_alert, missing)]
    scale = str(w.scenario.time_scale)

    processed = _cli("process", *ids, "--time-scale", scale, settings=w.values)
    assert processed.returncode == 0, processed.stderr
    assert "MarkupError" not in processed.stderr
    overview = _cli("status", settings=w.values)
    assert overview.returncode == 0, overview.stderr
    assert "[/x]" in overview.stdout  # the URL as Defender gave it, brackets and all
    shown = processed.stdout + overview.stdout
    for alert_id in ids:
        assert alert_id in shown
        detail = _cli("status", alert_id, settings=w.values)
        assert detail.returncode == 0, detail.stderr
        shown += detail.stdout
    # Rich would have eaten these tags had it read them as markup
    assert _HIDDEN in shown
    assert _LINK in shown
