"""Build the Functions package: `python -m deploy.package` (or `make package`) writes
dist/joedefender-functionapp-<version>.zip, the release asset the templates' PackageURL names.

What is in it: `function_app.py` and `host.json` (deploy/functionapp/), a `requirements.txt`
pinning every runtime dependency (the names and versions of deploy/requirements.lock, which
`make lock` writes from pyproject's pins and, for what they pull in, the versions installed
here), the `joedefender` package (no tests, no emulators: nothing on Azure runs them)
with a minimal dist-info so it knows its version, and the dependencies themselves under
`.python_packages/lib/site-packages` (Linux x86-64, CPython 3.11 wheels). The dependencies are in
the package because Premium runs it as it is from its URL (no build step), and so both plans run
exactly what was built and tested, not what a remote build resolves on the day. They are
installed from the lock with `--require-hashes`: every wheel must be the one the lock names.

Reproducible: entries sorted, fixed timestamps and permissions, no bytecode; the same sources and
wheels give the same bytes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from deploy.lock import LOCK, PIP_TARGET, PackageError, read, stale
from deploy.templates import ROOT, package_name, version

FUNCTION_APP = ROOT / "deploy" / "functionapp"
SOURCE = ROOT / "src" / "joedefender"
SITE_PACKAGES = ".python_packages/lib/site-packages"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _wanted(path: Path) -> bool:
    return not (SKIPPED_PARTS & set(path.parts)) and path.suffix not in SKIPPED_SUFFIXES


def _tree(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and _wanted(relative):
            yield f"{prefix}{relative.as_posix()}", path


def _dist_info(requirements: Iterable[str]) -> dict[str, bytes]:
    """Enough metadata for `importlib.metadata.version("joedefender")` to answer on Azure."""
    folder = f"joedefender-{version()}.dist-info"
    lines = ["Metadata-Version: 2.1", "Name: joedefender", f"Version: {version()}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requirements]
    return {f"{folder}/METADATA": ("\n".join(lines) + "\n").encode(), f"{folder}/top_level.txt": b"joedefender\n"}


def install_dependencies(lock: Path, into: Path) -> None:
    """The wheels for Azure's Linux x86-64 CPython 3.11, whatever this machine is, each checked
    against its hash in the lock; no scripts."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["--no-deps", "--only-binary=:all:", "--require-hashes", *PIP_TARGET]
    command += ["--target", str(into), "-r", str(lock)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise PackageError(f"pip could not install the dependencies:\n{completed.stderr.strip()[-3000:]}")


def entries(requirements: list[str], dependencies: Path | None) -> dict[str, bytes | Path]:
    """Archive name -> content (bytes, or the file to read)."""
    found: dict[str, bytes | Path] = {
        "function_app.py": FUNCTION_APP / "function_app.py",
        "host.json": FUNCTION_APP / "host.json",
        "requirements.txt": ("\n".join(requirements) + "\n").encode(),
    }
    for name, path in found.items():
        if isinstance(path, Path) and not path.is_file():
            raise PackageError(f"{path} is missing: the package needs deploy/functionapp/{name}")
    found.update(_tree(SOURCE, "joedefender/"))
    found.update(_dist_info(requirements))
    if dependencies is not None:
        # bin/ holds console scripts whose first line names this machine's interpreter: not for Azure.
        found.update((name, path) for name, path in _tree(dependencies, f"{SITE_PACKAGES}/") if "/bin/" not in name)
    return found


def write_zip(target: Path, content: dict[str, bytes | Path]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(content):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            data = content[name]
            archive.writestr(info, data if isinstance(data, bytes) else data.read_bytes())
    partial.replace(target)


def build(target: Path, *, with_dependencies: bool = True, lock: Path = LOCK) -> Path:
    """Write the package to `target`, its dependencies installed from `lock` (tests use a small
    one); the project's own lock must match pyproject's pins."""
    if lock == LOCK and (problems := stale(lock)):
        raise PackageError("deploy/requirements.lock is out of date, run `make lock`: " + "; ".join(problems))
    requirements = [pin.requirement for pin in read(lock)]
    with tempfile.TemporaryDirectory(prefix="joedefender-package-") as scratch:
        dependencies = None
        if with_dependencies:
            dependencies = Path(scratch) / "site-packages"
            install_dependencies(lock, dependencies)
        write_zip(target, entries(requirements, dependencies))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Azure Functions package (the release asset).")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / package_name(), help="the zip to write")
    parser.add_argument(
        "--no-dependencies", action="store_true", help="leave out .python_packages (not deployable; for inspection)"
    )
    args = parser.parse_args(argv)
    try:
        target = build(args.out, with_dependencies=not args.no_dependencies)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    print(f"{target} ({target.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
