"""`analysis/download` bodies: the reports that carry IOCs, and a tiny HTML page.

Layouts follow joe-api.md §2.4. Joe's JSON reports are XML converted to JSON: attributes become
`@name` keys with string values ("true"/"false"), text becomes `$`, an empty section is null, and
the `*fixed` variants keep one-element lists as lists. Only the IOC-bearing parts are emulated;
the rest of a real report (behaviour, signatures, ...) is absent.
"""

from __future__ import annotations

import html
import json
from typing import Any

from joedefender_emulators.http import Response
from joedefender_emulators.joe import errors
from joedefender_emulators.joe.state import Analysis
from joedefender_emulators.scenario import JoeIocs

# Every type a real server offers (joe-api.md §2.4); the emulator renders only EMULATED_TYPES.
DOCUMENTED_TYPES = frozenset(
    [
        "html",
        "lighthtml",
        "executive",
        "pdf",
        "pdfexecutive",
        "classhtml",
        "xml",
        "lightxml",
        "classxml",
        "clusterxml",
        "irxml",
        "json",
        "jsonfixed",
        "lightjson",
        "lightjsonfixed",
        "irjson",
        "irjsonfixed",
        "iocjson",
        "iocxml",
        "iochtml",
        "stix",
        "openioc",
        "maec",
        "misp",
        "graphreports",
        "shoots",
        "ishots",
        "memstrings",
        "binstrings",
        "sample",
        "cookbook",
        "bins",
        "unpackpe",
        "unpack",
        "ida",
        "pcap",
        "pcapslim",
        "pcapunified",
        "pcapsslinspection",
        "memdumps",
        "yara",
    ]
)
EMULATED_TYPES = ("html", "iocjson", "jsonfixed", "irjsonfixed")


def download(analysis: Analysis, report_type: str, run: int | None) -> Response:
    """The report as an attachment, with the Content-Disposition form jbxapi parses."""
    if report_type not in EMULATED_TYPES:
        if report_type in DOCUMENTED_TYPES:
            raise errors.invalid("type", f"report type {report_type} is not emulated")
        raise errors.invalid("type", f"unknown report type {report_type}")
    system = _run_system(analysis, run)
    if report_type == "html":
        body, content_type, extension = (
            html_page(analysis, "finished", system),
            "text/html; charset=utf-8",
            "html",
        )
    else:
        body, content_type, extension = _json(analysis, report_type, system), "application/json", "json"
    filename = f"report-{analysis.webid}-{report_type}.{extension}"
    # jbxapi reads the name as `split("filename=")[1][1:-2]`: quoted, then `";` closes the header.
    headers = {"Content-Disposition": f'attachment; filename="{filename}";'}
    return Response(200, body, headers, content_type)


def _run_system(analysis: Analysis, run: int | None) -> str:
    if run is None:
        return analysis.systems[0] if analysis.systems else ""
    if not 0 <= run < len(analysis.systems):
        raise errors.invalid("run", f"analysis {analysis.webid} has runs 0 to {len(analysis.systems) - 1}")
    return analysis.systems[run]


def _json(analysis: Analysis, report_type: str, system: str) -> bytes:
    iocs = analysis.verdict.iocs
    if report_type == "irjsonfixed":
        body: dict[str, Any] = _incident_report(analysis, system)
    elif report_type == "iocjson":
        body = {"analysis": _info_sections(iocs, full=False)}
    else:
        body = {"analysis": {"generalinfo": _general_info(analysis, system), **_info_sections(iocs, full=True)}}
    return json.dumps(body, indent=1).encode()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _section(key: str, items: list[dict[str, Any]]) -> dict[str, Any] | None:
    return {key: items} if items else None


def _info_sections(iocs: JoeIocs, *, full: bool) -> dict[str, Any]:
    """domaininfo/ipinfo/urlinfo/droppedinfo; the full report adds the attributes iocjson lacks."""
    extra: dict[str, str] = {"@targetid": "1", "@currentpath": ""} if full else {}
    domains = [{"@name": d.value, "@ip": "unknown", "@malicious": _flag(d.malicious), **extra} for d in iocs.domains]
    ips = [{"@ip": i.value, "@malicious": _flag(i.malicious)} for i in iocs.ips]
    urls = [{"@name": u.value, "@malicious": _flag(u.malicious), **extra} for u in iocs.urls]
    dropped = [
        {
            "@file": f.name,
            "@malicious": _flag(f.malicious),
            **({"@targetid": "1", "@process": ""} if full else {}),
            "value": [{"@algo": "SHA-256", "$": f.sha256.lower()}],
        }
        for f in iocs.dropped
    ]
    return {
        "domaininfo": _section("domain", domains),
        "ipinfo": _section("ip", ips),
        "urlinfo": _section("url", urls),
        "droppedinfo": _section("hash", dropped),
    }


def _general_info(analysis: Analysis, system: str) -> dict[str, Any]:
    # docs silent: a real generalinfo holds much more; `id` is the analysis id, as in the IR report.
    target = {"url": analysis.url} if analysis.mode == "url" else {"sample": analysis.filename}
    return {"id": analysis.analysisid, "system": system, "arch": "WINDOWS", "target": target}


def _incident_report(analysis: Analysis, system: str) -> dict[str, Any]:
    verdict = analysis.verdict
    iocs = verdict.iocs

    def text_items(key: str, values: list[tuple[str, bool]]) -> dict[str, Any] | None:
        return _section(key, [{"$": value, "@malicious": _flag(bad)} for value, bad in values])

    dropped = [{"$": f.name, "@sha256": f.sha256.lower(), "@malicious": _flag(f.malicious)} for f in iocs.dropped]
    return {
        "analysis": {
            "id": analysis.analysisid,
            "system": system,
            "arch": "WINDOWS",
            "detection": {
                "malicious": verdict.detection == "malicious",
                "suspicious": verdict.detection == "suspicious",
                "clean": verdict.detection == "clean",
                "unknown": verdict.detection == "unknown",
                "score": verdict.score,
                "minscore": 0,
                "maxscore": 100,
            },
            "confidence": {"score": 3, "minscore": 0, "maxscore": 5, "expertadviceneeded": False},
            "contacted": {
                "domains": text_items("domain", [(d.value, d.malicious) for d in iocs.domains]),
                "ips": text_items("ip", [(i.value, i.malicious) for i in iocs.ips]),
                "urls": text_items("url", [(u.value, u.malicious) for u in iocs.urls]),
            },
            "dropped": _section("file", dropped),
        }
    }


def html_page(analysis: Analysis, status: str, system: str | None = None) -> bytes:
    """A small page standing in for the report and for the web UI's analysis page."""
    if system is None:
        system = _run_system(analysis, None)
    verdict = analysis.verdict
    finished = status == "finished"
    rows = {
        "Web ID": analysis.webid,
        "Analysis ID": analysis.analysisid,
        "Sample": analysis.filename,
        "SHA-256": analysis.digests.sha256 if analysis.digests else "",
        "System": system,
        "Status": status,
        "Detection": verdict.detection if finished else "unknown",
        "Score": str(verdict.score) if finished else "",
        "Threat": verdict.threatname if finished else "",
    }
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>Joe Sandbox analysis {html.escape(analysis.webid)}</title></head>"
        f"<body><h1>Joe Sandbox analysis {html.escape(analysis.webid)} (emulated)</h1>"
        f"<table>{cells}</table></body></html>"
    )
    return page.encode()
