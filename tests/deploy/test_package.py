"""The Functions package as `make package` builds it: what is in it, what is not, the same bytes
from the same sources, and the app it holds is the one the host would load."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from deploy.templates import version

from deploy import lock, package

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.build(tmp_path_factory.mktemp("package") / "app.zip", with_dependencies=False)


def test_holds_the_app_its_settings_file_and_the_connector_and_nothing_else(built: Path) -> None:
    names = zipfile.ZipFile(built).namelist()
    assert names == sorted(names)
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(names)
    assert "joedefender/hosts/azure/functions.py" in names
    assert "joedefender/endpoint/scripts/joedefender-locate.ps1" in names  # package data travels too
    assert "joedefender/hosts/page/templates/overview.html" in names  # the page's templates and style sheet
    assert "joedefender/hosts/page/templates/page.css" in names
    assert f"joedefender-{version()}.dist-info/METADATA" in names
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "joedefender",
        f"joedefender-{version()}.dist-info",
    }
    assert not [
        n for n in names if "__pycache__" in n or n.endswith(".pyc") or "emulators" in n or n.startswith("tests")
    ]
    sources = {
        f"joedefender/{p.relative_to(ROOT / 'src' / 'joedefender').as_posix()}"
        for p in (ROOT / "src" / "joedefender").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sources == {n for n in names if n.startswith("joedefender/")}


def test_same_sources_give_the_same_bytes(built: Path, tmp_path: Path) -> None:
    again = package.build(tmp_path / "again.zip", with_dependencies=False)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(built.read_bytes()).digest()
    for info in zipfile.ZipFile(built).infolist():
        assert info.date_time == package.EPOCH
        assert info.external_attr >> 16 == 0o100644


def test_requirements_pin_every_runtime_dependency_and_what_it_pulls_in(built: Path) -> None:
    lines = zipfile.ZipFile(built).read("requirements.txt").decode().split()
    pins = dict(line.split("==") for line in lines)
    for requirement in lock.project_dependencies():
        (spec,) = requirement.specifier
        assert pins[requirement.name.lower().replace("_", "-")] == spec.version
    assert pins["pydantic-core"] == metadata.version("pydantic-core")  # pulled in by pydantic, pinned too
    assert not {"pytest", "ruff", "mypy", "hypothesis"} & set(pins)


def test_neither_the_emulators_nor_yaml_travel_to_azure(built: Path) -> None:
    """The emulators are a distribution of their own (emulators/), and PyYAML is theirs alone: the
    Functions package, and the lock it installs from, carry neither."""
    pins = {line.split("==")[0] for line in zipfile.ZipFile(built).read("requirements.txt").decode().split()}
    assert not {"pyyaml", "joedefender-emulators", "types-pyyaml"} & pins
    names = zipfile.ZipFile(built).namelist()
    assert not [n for n in names if "joedefender_emulators" in n or n.split("/")[-2:-1] == ["yaml"]]


def test_the_app_in_the_package_indexes_with_the_packaged_connector(built: Path, tmp_path: Path) -> None:
    """function_app.py from the zip, with the zip's joedefender first on the path, as the host loads it."""
    root = tmp_path / "wwwroot"
    zipfile.ZipFile(built).extractall(root)
    script = """if True:
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import function_app, joedefender
        indexed = function_app.app.get_functions()
        functions = {str(f.get_function_name()): json.loads(f.get_function_json()) for f in indexed}
        queues = {n: f["bindings"][0].get("queueName") for n, f in functions.items()}
        print(json.dumps({"where": joedefender.__file__, "version": joedefender.__version__, "queues": queues}))
    """
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"StoragePrefix": "contoso-a", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["where"].startswith(str(root))
    assert found["version"] == version()
    assert found["queues"]["work"] == "contoso-a-work"
    assert found["queues"]["liveresponse"] == "contoso-a-liveresponse"
    assert {"alerts", "joeaz_alerts", "status", "poller", "sweeper"} <= set(found["queues"])


def _small_lock(folder: Path, *pins: lock.Pin) -> Path:
    path = folder / "requirements.lock"
    path.write_text(lock.render(list(pins)), encoding="utf-8")
    return path


def test_dependencies_are_installed_for_linux_cpython_311_without_scripts(tmp_path: Path) -> None:
    small = _small_lock(tmp_path, *lock.wheel_hashes([f"idna=={metadata.version('idna')}"]))
    built = package.build(tmp_path / "deps.zip", lock=small)
    names = zipfile.ZipFile(built).namelist()
    assert f"{package.SITE_PACKAGES}/idna/__init__.py" in names
    assert not [n for n in names if n.startswith(f"{package.SITE_PACKAGES}/bin/") or n.endswith(".pyc")]


def test_a_wheel_whose_hash_is_not_the_locked_one_stops_the_build(tmp_path: Path) -> None:
    forged = lock.Pin("idna", metadata.version("idna"), ("sha256:" + "0" * 64,))
    with pytest.raises(lock.PackageError, match=r"(?i)hash"):
        package.build(tmp_path / "deps.zip", lock=_small_lock(tmp_path, forged))
    assert not (tmp_path / "deps.zip").exists()


def test_the_lock_holds_every_dependency_with_a_hash_and_matches_pyprojects_pins(built: Path) -> None:
    pins = lock.read()
    assert lock.stale() == []
    assert lock.main(["--check"]) == 0
    assert all(pin.hashes and all(h.startswith("sha256:") and len(h) == 71 for h in pin.hashes) for pin in pins)
    locked = {pin.name: pin.version for pin in pins}
    for requirement in lock.project_dependencies():
        (spec,) = requirement.specifier
        assert locked[requirement.name.lower().replace("_", "-")] == spec.version
    assert "pyyaml" not in locked
    # what the package lists is the lock, line for line
    packaged = zipfile.ZipFile(built).read("requirements.txt").decode().split()
    assert packaged == [pin.requirement for pin in pins]


def test_a_pin_changed_in_pyproject_makes_the_lock_stale_and_stops_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = lock.project_dependencies()
    bumped = [r for r in real if r.name != "idna"] + [type(real[0])("idna==0.1")]
    monkeypatch.setattr(lock, "project_dependencies", lambda: bumped)
    monkeypatch.setattr(lock, "_installed_version", lambda name: "0.1" if name == "idna" else metadata.version(name))
    assert "not in the lock: idna==0.1" in lock.stale()
    assert lock.main(["--check"]) == 1
    with pytest.raises(lock.PackageError, match="make lock"):
        package.build(tmp_path / "app.zip", with_dependencies=False)


def test_a_pin_that_disagrees_with_what_is_installed_stops_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    real = lock.project_dependencies()
    monkeypatch.setattr(lock, "project_dependencies", lambda: [*real[:-1], type(real[0])("certifi==1.0.0")])
    with pytest.raises(lock.PackageError, match=r"certifi is pinned to 1\.0\.0 but"):
        lock.locked_requirements()
