"""The demo's Process evidence as both APIs serve it, in the documented shapes: the MDE API's flat
item (every documented key, the image's hashes, name and folder, `processCommandLine`, the parent's
name and folder without hashes) and Graph's processEvidence (`imageFile`, `processCommandLine`)."""

from __future__ import annotations

from collections.abc import Callable

from joedefender_emulators.mde.alerts import EVIDENCE_KEYS
from joedefender_emulators.scenario import load_scenario
from tests.world import World

WorldFactory = Callable[..., World]
RUNDLL32_ALERT = "da638640000000000015_1015"
COMMAND_LINE = "rundll32.exe  C:\\ProgramData\\Contoso\\Cache\\thumbcache.dll,DllRegisterServer"


def test_the_demos_process_evidence_is_served_in_both_documented_shapes(make_world: WorldFactory) -> None:
    demo = load_scenario()
    w = make_world(demo)
    rundll32 = demo.samples["rundll32"]

    [mde] = [a for a in w.defender("/_emulator/alerts") if a["id"] == RUNDLL32_ALERT]
    [item] = mde["evidence"]
    assert set(item) == set(EVIDENCE_KEYS)
    assert (item["entityType"], item["fileName"], item["filePath"]) == (
        "Process",
        "rundll32.exe",
        "C:\\Windows\\SysWOW64",
    )
    assert (item["sha256"], item["sha1"]) == (rundll32.sha256, rundll32.sha1)
    assert item["processCommandLine"] == COMMAND_LINE
    assert (item["parentProcessFileName"], item["parentProcessFilePath"]) == ("wscript.exe", "C:\\Windows\\System32")

    [graph] = [a for a in w.graph("/_emulator/alerts") if a["id"] == RUNDLL32_ALERT]
    [process] = [e for e in graph["evidence"] if e["@odata.type"].endswith("processEvidence")]
    assert process["processCommandLine"] == COMMAND_LINE
    assert process["imageFile"]["sha256"] == rundll32.sha256
    assert (process["imageFile"]["fileName"], process["imageFile"]["filePath"]) == (
        "rundll32.exe",
        "C:\\Windows\\SysWOW64",
    )
    assert process["parentProcessImageFile"]["sha256"] is None  # the parent has no hashes
    assert process["mdeDeviceId"] == mde["machineId"]
