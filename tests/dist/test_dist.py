"""The release packages of `make dist`, installed the way a user installs them: the wheel into a
new, empty venv and the npm tarball into a scratch npm project, from the local files only (no
index, no registry), then the README quickstarts run there, outside the repository.

`make test-dist` builds dist/ first; these tests fail (not skip) when a package is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
README = (ROOT / "README.md").read_text()
# Each step is bounded: a hung pip or npm fails the test instead of the whole run.
STEP_TIMEOUT = 300


def only(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"dist/ should hold exactly one {pattern} (run `make dist`): {found}"
    return found[0]


def quickstart(language: str) -> str:
    match = re.search(rf"## {language} quickstart\n\n```\w+\n(.*?)```", README, re.S)
    assert match is not None, f"README.md has a {language} quickstart"
    return match.group(1)


def scratch_project(tmp_path: Path) -> Path:
    """A directory outside the repository with the example document the quickstarts read."""
    project = tmp_path / "app"
    (project / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "flags.json", project / "examples" / "flags.json")
    return project


def section_names(elf: bytes) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (the packages are Linux x86_64)."""
    assert elf[:6] == b"\x7fELF\x02\x01", "a 64-bit little-endian ELF file"
    section_offset = int.from_bytes(elf[0x28:0x30], "little")
    entry_size, count, names_index = (int.from_bytes(elf[i : i + 2], "little") for i in (0x3A, 0x3C, 0x3E))

    def header(i: int) -> tuple[int, int, int]:
        at = section_offset + i * entry_size
        name = int.from_bytes(elf[at : at + 4], "little")
        offset = int.from_bytes(elf[at + 0x18 : at + 0x20], "little")
        size = int.from_bytes(elf[at + 0x20 : at + 0x28], "little")
        return name, offset, size

    _, table, table_size = header(names_index)
    strings = elf[table : table + table_size]
    return {strings[name : strings.index(b"\0", name)].decode() for name, _, _ in map(header, range(count))}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_is_manylinux_abi3_and_stripped() -> None:
    wheel = only("flagrail-*.whl")
    assert re.search(r"-cp310-abi3-manylinux_2_\d+_x86_64(\.manylinux\w+)*\.whl$", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        native = [n for n in names if n.startswith("flagrail/_flagrail") and n.endswith(".so")]
        assert len(native) == 1, names
        assert "flagrail/testing.py" in names and "flagrail/py.typed" in names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert re.search(r"\[pytest11\]\s*flagrail\s*=\s*flagrail\.testing", archive.read(entry_points).decode())
        size = archive.getinfo(native[0]).file_size
        library = archive.read(native[0])
    # A stripped release build is a few MB; the debug build is ~25 MB.
    assert size < 8_000_000, size
    assert not {".symtab", ".debug_info"} & section_names(library)


def test_the_npm_tarball_carries_the_release_stripped_addon() -> None:
    tarball = only("flagrail-*.tgz")
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}
        addon = members["package/flagrail.node"]
        assert addon.size < 8_000_000, addon.size
        manifest = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
        data = archive.extractfile(addon).read()  # type: ignore[union-attr]
    # Exactly the `files` of package.json, the manifest and the README: no tests, no scripts.
    files = json.loads((ROOT / "bindings-node" / "package.json").read_text())["files"]
    assert set(members) == {f"package/{name}" for name in [*files, "package.json", "README.md"]}
    assert "package/flagrail.node" in members
    assert "scripts" not in manifest
    # No symbol table and no debug sections: `strip --strip-unneeded` ran on the release build.
    names = section_names(data)
    assert ".dynsym" in names and not {".symtab", ".debug_info"} & names, names


def test_the_wheel_installs_in_a_clean_venv_and_runs_the_readme_quickstart(tmp_path: Path) -> None:
    wheel = only("flagrail-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--disable-pip-version-check", str(wheel)],
        cwd=tmp_path,
        env=env,
    )
    project = scratch_project(tmp_path)
    done = run([str(python), "-c", quickstart("Python")], cwd=project, env=env)
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "v2.2 claude-opus-4 SPLIT canary 2026-11-21.1", done.stdout
    assert lines[1] == "support/v2.2"
    assert lines[2].startswith("answer from claude-opus-4 v2.2 ['success']"), done.stdout
    # The installed package, not the repository's: imported from the venv's site-packages.
    where = run([str(python), "-c", "import flagrail; print(flagrail.__file__)"], cwd=project, env=env)
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout


def test_the_npm_tarball_installs_in_a_scratch_project_and_runs_the_readme_quickstart(tmp_path: Path) -> None:
    tarball = only("flagrail-*.tgz")
    project = scratch_project(tmp_path)
    (project / "package.json").write_text(json.dumps({"name": "scratch-app", "version": "1.0.0", "private": True}))
    env = dict(os.environ, npm_config_cache=str(tmp_path / "npm-cache"))
    # A local tarball without dependencies: --offline proves nothing is fetched.
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", str(tarball)], cwd=project, env=env)
    code = quickstart("Node").replace("require('./bindings-node')", "require('flagrail')")
    assert "require('flagrail')" in code
    done = run(["node", "-e", code], cwd=project, env=env)
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "v2.2 claude-opus-4 SPLIT canary 2026-11-21.1", done.stdout
    assert lines[1] == "support/v2.2"
    assert lines[2].startswith("answer from claude-opus-4 v2.2 [ 'success' ]"), done.stdout
    where = run(["node", "-p", "require.resolve('flagrail')"], cwd=project, env=env)
    assert str(project / "node_modules" / "flagrail") in where.stdout
    esm = run(["node", "--input-type=module", "-e", "import { Flags } from 'flagrail'; console.log(typeof Flags.forTests)"], cwd=project, env=env)
    assert esm.stdout.strip() == "function"


def test_the_readme_says_how_to_install_from_dist() -> None:
    assert "make dist" in README
    assert "not yet published" in README
    assert "pip install dist/flagrail-" in README and "npm install ./dist/flagrail-" in README
