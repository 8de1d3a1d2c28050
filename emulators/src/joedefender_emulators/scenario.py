"""The scenario file: everything an emulated tenant and sandbox hold, and how they behave.

A scenario is YAML (or JSON, which is YAML too). Durations are emulated seconds; `time_scale`
says how many real seconds one emulated second takes. The format is documented in the README
("Scenario files"); this module is its single source of truth.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
from collections.abc import Iterator
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from joedefender_emulators.errors import EmulatorError

ALL_PERMISSIONS = (
    "Alert.Read.All",
    "Alert.ReadWrite.All",
    "Machine.Read.All",
    "Machine.ReadWrite.All",
    "Machine.LiveResponse",
    "Library.Manage",
    "Ti.ReadWrite",
    "Ti.ReadWrite.All",
)

# Microsoft Graph application permissions of the security API (the Graph token's `roles`).
GRAPH_PERMISSIONS = (
    "SecurityAlert.Read.All",
    "SecurityAlert.ReadWrite.All",
    "SecurityIncident.Read.All",
    "SecurityIncident.ReadWrite.All",
)

_CHUNK = 1 << 20


class ScenarioError(EmulatorError):
    """The scenario file is unreadable or does not describe a consistent world."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class GeneratedBytes(_Model):
    """Deterministic pseudo-random content, produced in chunks: a 200 MB sample without a 200 MB file."""

    size: int = Field(ge=0)
    seed: int = 0


class Blob(_Model):
    """The bytes of a sample: exactly one of text, base64 or generate."""

    text: str | None = None
    base64: str | None = None
    generate: GeneratedBytes | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Blob:
        if sum(x is not None for x in (self.text, self.base64, self.generate)) != 1:
            raise ValueError("a sample needs exactly one of text, base64 or generate")
        return self

    def chunks(self) -> Iterator[bytes]:
        if self.text is not None:
            yield self.text.encode("utf-8")
        elif self.base64 is not None:
            yield base64.b64decode(self.base64)
        else:
            assert self.generate is not None
            rng = random.Random(self.generate.seed)
            remaining = self.generate.size
            while remaining > 0:
                n = min(_CHUNK, remaining)
                yield rng.randbytes(n)
                remaining -= n

    def read(self) -> bytes:
        return b"".join(self.chunks())

    @cached_property
    def _digests(self) -> tuple[str, str, str, int]:
        sha256, sha1, md5 = hashlib.sha256(), hashlib.sha1(), hashlib.md5()  # noqa: S324
        size = 0
        for chunk in self.chunks():
            sha256.update(chunk)
            sha1.update(chunk)
            md5.update(chunk)
            size += len(chunk)
        return sha256.hexdigest(), sha1.hexdigest(), md5.hexdigest(), size

    @property
    def sha256(self) -> str:
        return self._digests[0]

    @property
    def sha1(self) -> str:
        return self._digests[1]

    @property
    def md5(self) -> str:
        return self._digests[2]

    @property
    def size(self) -> int:
        return self._digests[3]


class OnlineWindow(_Model):
    """The machine is online from `start` to `end` (emulated seconds from the start; no end = for good)."""

    start: float = 0.0
    end: float | None = None


class MachineFile(_Model):
    path: str
    sample: str
    # GetFile refuses reparse points (a symbolic link on Linux and macOS) and sparse files
    # (live-response-command-examples.md): a file of such a kind is refused.
    kind: Literal["file", "link", "sparse"] = "file"


class QuarantineEntry(_Model):
    threat_name: str
    original_path: str
    sample: str


# A local user's SID (what `whoami /user` shows for an ordinary account), and BUILTIN\Users.
LOCAL_USER_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"
USERS_SID = "S-1-5-32-545"


class PlantedFolder(_Model):
    """A folder someone made on the machine before the connector came: any local user may create
    folders in C:\\ProgramData (the owner is then that user, and the access rules name whom the
    user let in), or make one a junction to a folder of their own."""

    path: str
    owner: str = LOCAL_USER_SID
    access: list[str] = [LOCAL_USER_SID, USERS_SID]
    junction_to: str | None = None


class PlantedEntries(_Model):
    """A crafted 1 MiB Entries file planted in the machine's quarantine by whoever can write
    there (a local admin, malware running as SYSTEM): a layout of mde/hostile_quarantine.py,
    with that many resources (none: as many as the file holds). Listed as the newest entries."""

    layout: str
    resources: int | None = Field(None, ge=0)


class MdatpBehaviour(_Model):
    """How the `mdatp` of a Linux or macOS machine behaves where its documentation is silent."""

    # The JSON schema of `mdatp threat list --output json` is not documented: two plausible shapes.
    listing: Literal["array", "wrapped"] = "array"
    # The restore writes the file, then never returns (a hung agent): for deadline tests.
    hang_on_restore: bool = False


class Machine(_Model):
    id: str = Field(pattern=r"^[0-9a-fA-F]{40}$")
    computer_dns_name: str = Field(alias="computerDnsName")
    os_platform: str = Field("Windows11", alias="osPlatform")
    # The Defender agent's version (e.g. 101.23092.0012 on Linux). The Machine entity documents
    # no such field (machine.md): the emulator shows it as `agentVersion` when the scenario sets it.
    agent_version: str | None = Field(None, alias="agentVersion")
    # What the device runs, when its osPlatform is a value a client may not know (osPlatform has
    # no documented list of values): shown osPlatform as given, behaves as this OS. None: the OS
    # osPlatform names (mde/platforms.py).
    device_os: Literal["windows", "linux", "macos"] | None = None
    mdatp: MdatpBehaviour = MdatpBehaviour()
    online: bool | list[OnlineWindow] = True
    busy_until: float = Field(0.0, description="another live response session holds the machine until then")
    files: list[MachineFile] = []
    quarantine: list[QuarantineEntry] = []
    planted_folders: list[PlantedFolder] = []
    planted_entries: list[PlantedEntries] = []
    extra: dict[str, Any] = Field({}, description="further machine fields, returned as given")

    def is_online(self, elapsed: float) -> bool:
        if isinstance(self.online, bool):
            return self.online
        return any(w.start <= elapsed and (w.end is None or elapsed < w.end) for w in self.online)

    def next_online(self, elapsed: float) -> float | None:
        """When the machine is next online at or after `elapsed`; None if never."""
        if self.is_online(elapsed):
            return elapsed
        if isinstance(self.online, bool):
            return None
        starts = [w.start for w in self.online if w.start >= elapsed]
        return min(starts) if starts else None


class LiveResponseTimings(_Model):
    """How long live response takes on the emulated endpoints (emulated seconds)."""

    pending_seconds: float = 5.0
    command_seconds: float = 10.0
    getfile_bytes_per_second: float = 50_000_000.0
    pending_expiry_seconds: float = 3 * 24 * 3600.0
    runscript_timeout_seconds: float = 600.0
    getfile_timeout_seconds: float = 1800.0
    download_link_seconds: float = 1800.0
    # REAL seconds a script run with real bash (Linux and macOS) may take before the emulator
    # stops it as live response would at its RunScript timeout (real time: the script runs for real).
    script_real_seconds: float = 60.0


class DefenderScenario(_Model):
    tenant_id: str = "00000000-0000-4000-8000-000000000001"
    client_id: str = "00000000-0000-4000-8000-000000000002"
    client_secret: str = "emulator-client-secret"  # noqa: S105 - an emulator credential, printed by `emulate`
    permissions: list[str] = list(ALL_PERMISSIONS)
    token_lifetime_seconds: float = 3599.0
    live_response_enabled: bool = True
    unsigned_scripts_allowed: bool = True
    # false: GetFile on the Quarantine folder fails (access denied), as it may on a real endpoint
    quarantine_getfile: bool = True
    # true: the Entries files are damaged (truncated), so only the ResourceData listing helps
    damaged_entries: bool = False
    # false: a script cannot read the Quarantine folder's files (Get-Content is denied, as it may
    # be on a real endpoint), so the locator lists the Entries files without their bytes
    quarantine_script_read: bool = True
    rate_limits: bool = True
    # shifted: every alert time moves by the same amount so the newest lastUpdateTime is the
    # emulators' start (the real time then): a connector polling the last hour finds them, on any
    # day. as_given: the times exactly as written (for tests of filters on fixed times).
    alert_times: Literal["shifted", "as_given"] = "shifted"
    machines: list[Machine] = []
    alerts: list[dict[str, Any]] = []
    indicators: list[dict[str, Any]] = []
    live_response: LiveResponseTimings = LiveResponseTimings()
    max_active_indicators: int = 15000


class GraphIncident(_Model):
    """An incident as Graph `security/incidents` holds it before the run: its tags and comments
    (an analyst's, say). Incidents that alerts name by `incidentId` but that are not listed here
    exist too, without tags or comments."""

    id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    display_name: str | None = Field(None, alias="displayName")
    status: Literal["active", "inProgress", "resolved", "redirected", "awaitingAction"] = "active"
    severity: Literal["unknown", "informational", "low", "medium", "high"] = "medium"
    assigned_to: str | None = Field(None, alias="assignedTo")
    custom_tags: list[str] = Field([], alias="customTags")
    comments: list[dict[str, Any]] = Field([], description="{comment, createdByDisplayName, createdDateTime}")


class GraphScenario(_Model):
    """The Microsoft Graph security API (`/v1.0/security/alerts_v2`, `/v1.0/security/incidents`)
    on the same tenant. Its alerts are the `defender.alerts` (each may carry a `graph:` mapping:
    `serviceSource`, `detectionSource`, `suppressed`, extra Graph-shaped `evidence`)."""

    # The Graph token's roles: the same app registration, another audience and other permissions.
    permissions: list[str] = list(GRAPH_PERMISSIONS)
    # false: list answers carry no @odata.nextLink even when more alerts match (as reported of the
    # real service: learn.microsoft.com/en-us/answers/questions/1611210); clients page otherwise.
    next_link: bool = True
    # Graph's security throttle: 150 requests a minute per app per tenant, every /security call.
    rate_limits: bool = True
    # docs silent on the page size without $top and on the largest $top: these are ours.
    default_page_size: int = Field(50, ge=1)
    max_top: int = Field(1000, ge=1)
    incidents: list[GraphIncident] = []


class JoeIoc(_Model):
    value: str
    malicious: bool = False


class JoeDroppedFile(_Model):
    sha256: str
    name: str = ""
    malicious: bool = False


class JoeIocs(_Model):
    domains: list[JoeIoc] = []
    ips: list[JoeIoc] = []
    urls: list[JoeIoc] = []
    dropped: list[JoeDroppedFile] = []


class JoeVerdict(_Model):
    """What Joe says about a sample or URL when it analyses it (identified by one of the three keys)."""

    sample: str | None = None
    sha256: str | None = None
    url: str | None = None
    detection: Literal["clean", "suspicious", "malicious", "unknown"] = "clean"
    score: int = 0
    threatname: str = ""
    classification: str = ""
    systems: list[str] = ["w10x64_22h2"]
    iocs: JoeIocs = JoeIocs()

    @model_validator(mode="after")
    def _one_key(self) -> JoeVerdict:
        if sum(x is not None for x in (self.sample, self.sha256, self.url)) != 1:
            raise ValueError("a verdict names exactly one of sample, sha256 or url")
        return self


class JoeKnownAnalysis(JoeVerdict):
    """An analysis Joe already holds when the run starts (found by analysis/search)."""

    age_days: float = 1.0
    encrypted: bool = False
    filename: str | None = None


class JoeSystem(_Model):
    """One analysis system `server/systems` lists."""

    name: str
    arch: Literal["WINDOWS", "LINUX", "MAC", "IOS", "ANDROID"] = "WINDOWS"
    description: str = ""


class JoeScenario(_Model):
    api_key: str = "emulator-joe-api-key"
    # The systems the server offers (None: the built-in list: Windows, Linux, macOS, Android, iOS).
    systems: list[JoeSystem] | None = None
    online: bool = True
    account_type: str = "ultimate"
    quota_daily: int = 100
    quota_monthly: int = 1000
    queue_seconds: float = 30.0
    analysis_seconds: float = 300.0
    verdicts: list[JoeVerdict] = []
    analyses: list[JoeKnownAnalysis] = []


class FaultRule(_Model):
    """Misbehaviour injected for matching requests.

    `path` is a regular expression searched in the request path. `delay` is in REAL seconds (it
    models the network, not the scenario's timeline). `times` limits how often it fires (None:
    always); `skip` lets that many matching requests through first; `rate` fires it at random
    with that probability (seeded). `after`: the request is carried out first and only its answer
    is replaced (a 5xx) or lost (a dropped connection), as when a real service applied a change but
    the answer never reached the client; without it a `status` or `drop` stops the request before
    it runs. A `delay` alone holds the request that long and then carries it out and answers it,
    whether the client still waits or not: a service that applies a write after the client's
    timeout (an acceptance run saw Defender apply a comment PATCH 65 s after it was sent).
    """

    service: Literal["defender", "graph", "joe"]
    method: str = "*"
    path: str
    status: int | None = None
    retry_after: int | None = None
    code: str | int | None = None
    message: str | None = None
    delay: float = 0.0
    drop: bool = False
    after: bool = False
    times: int | None = None
    skip: int = 0
    rate: float = Field(1.0, ge=0.0, le=1.0)


class Scenario(_Model):
    name: str = "unnamed"
    description: str = ""
    time_scale: float = Field(1.0, gt=0)
    seed: int = 0
    samples: dict[str, Blob] = {}
    defender: DefenderScenario = DefenderScenario()
    graph: GraphScenario = GraphScenario()
    joe: JoeScenario = JoeScenario()
    faults: list[FaultRule] = []

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        known = set(self.samples)
        names: list[str] = []
        for machine in self.defender.machines:
            names += [f.sample for f in machine.files] + [q.sample for q in machine.quarantine]
        names += [v.sample for v in [*self.joe.verdicts, *self.joe.analyses] if v.sample]
        missing = sorted(set(names) - known)
        if missing:
            raise ValueError(f"unknown samples referenced: {', '.join(missing)}")
        return self

    def sample_for_sha256(self, sha256: str) -> Blob | None:
        for blob in self.samples.values():
            if blob.sha256 == sha256.lower():
                return blob
        return None


def _expand_sample_refs(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill `$sample: NAME` in alert evidence with that sample's sha1/sha256, so YAML need not hold
    hashes; in Graph-shaped evidence (an alert's `graph.evidence`), in its `fileDetails` or `imageFile`."""
    samples = {name: Blob.model_validate(spec) for name, spec in (raw.get("samples") or {}).items()}
    raw = copy.deepcopy(raw)
    for alert in (raw.get("defender") or {}).get("alerts") or []:
        facet = alert.get("graph") if isinstance(alert.get("graph"), dict) else {}
        for item in [*(alert.get("evidence") or []), *(facet.get("evidence") or [])]:
            name = item.pop("$sample", None) if isinstance(item, dict) else None
            if name is None:
                continue
            if name not in samples:
                raise ScenarioError(f"alert {alert.get('id')}: evidence names unknown sample {name!r}")
            nested = next((item[k] for k in ("fileDetails", "imageFile") if isinstance(item.get(k), dict)), None)
            target = nested if nested is not None else item
            target.setdefault("sha256", samples[name].sha256)
            target.setdefault("sha1", samples[name].sha1)
    return raw


def parse_scenario(raw: Any, source: str = "scenario") -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping")
    try:
        return Scenario.model_validate(_expand_sample_refs(raw))
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from exc


def load_scenario(path: Path | str | None = None) -> Scenario:
    """Read a scenario file; None (or "demo") gives the bundled demo scenario."""
    if path is None or str(path) == "demo":
        text = resources.files("joedefender_emulators").joinpath("scenarios/demo.yaml").read_text("utf-8")
        source = "bundled demo scenario"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    return parse_scenario(raw, source)
