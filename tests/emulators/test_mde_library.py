"""The live response library: multipart upload with the documented fields, list, delete."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import CLIENT


def test_upload_list_delete(mde):
    content = b"param([string]$Mode)\nWrite-Output $Mode\n"
    response = mde.upload(
        "collect.ps1",
        content,
        Description="Collects a sample",
        ParametersDescription="-Mode <Collect|Cleanup>",
        HasParameters="true",
    )
    assert response.status_code == 200, response.text
    entry = response.json()
    assert entry["fileName"] == "collect.ps1"
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    assert entry["description"] == "Collects a sample"
    assert entry["parametersDescription"] == "-Mode <Collect|Cleanup>"
    assert entry["hasParameters"] is True
    assert entry["createdBy"] == CLIENT
    assert entry["creationTime"] == entry["lastUpdatedTime"]

    listed = mde.get("/api/libraryfiles").json()
    assert listed["@odata.context"].endswith("$metadata#LibraryFiles")
    [item] = listed["value"]
    assert set(item) == {
        "fileName", "sha256", "description", "creationTime", "lastUpdatedTime", "createdBy", "hasParameters",
        "parametersDescription",
    }  # fmt: skip
    assert mde.inspect("library")["value"] == listed["value"]

    deleted = mde.call("DELETE", "/api/libraryfiles/collect.ps1")
    assert deleted.status_code == 204
    assert mde.get("/api/libraryfiles").json()["value"] == []
    again = mde.call("DELETE", "/api/libraryfiles/collect.ps1")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "ResourceNotFound"


def test_existing_name_needs_override(mde):
    assert mde.upload("tool.ps1", b"v1").status_code == 200
    refused = mde.upload("TOOL.ps1", b"v2")
    assert refused.status_code == 400
    assert "OverrideIfExists" in refused.json()["error"]["message"]
    assert mde.get("/api/libraryfiles").json()["value"][0]["sha256"] == hashlib.sha256(b"v1").hexdigest()
    mde.advance(10)
    replaced = mde.upload("tool.ps1", b"v2", OverrideIfExists="true")
    assert replaced.status_code == 200
    entry = replaced.json()
    assert entry["sha256"] == hashlib.sha256(b"v2").hexdigest()
    assert entry["lastUpdatedTime"] > entry["creationTime"]
    assert len(mde.get("/api/libraryfiles").json()["value"]) == 1


def test_20_mb_limit(mde):
    assert mde.upload("big.bin", b"\0" * (20 * 1024 * 1024)).status_code == 200
    too_big = mde.upload("bigger.bin", b"\0" * (20 * 1024 * 1024 + 1))
    assert too_big.status_code == 400
    assert "20 MB" in too_big.json()["error"]["message"]


@pytest.mark.parametrize("name", ["bad name.ps1", "../x.ps1", "x;rm.ps1", "über.ps1", ""])
def test_file_names_are_alphanumerics_dash_underscore_dot(mde, name):
    response = mde.upload(name, b"x")
    assert response.status_code == 400
    assert mde.get("/api/libraryfiles").json()["value"] == []


def test_upload_needs_a_multipart_file(mde):
    no_file = mde.post("/api/libraryfiles", files={"Description": (None, "x")})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["code"] == "MissingRequiredParameter"
    not_multipart = mde.post("/api/libraryfiles", json={"file": "x"})
    assert not_multipart.status_code == 400
    bad_flag = mde.upload("a.ps1", b"x", HasParameters="maybe")
    assert bad_flag.status_code == 400
    assert mde.get("/api/libraryfiles").json()["value"] == []
