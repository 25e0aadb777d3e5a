#!/usr/bin/env python3
"""Checks the module structure of the Rust crates: no import cycle between modules (files) of
core/src or of either binding crate, and no core module importing from a layer below it.

It reads `use crate::…`, `use super::…`, `use self::…` statements and inline `crate::…` paths
(comments and `#[cfg(test)] mod tests` blocks are skipped), resolves each path to the file that
defines the item (following `pub use` re-exports, so `crate::live::Flags` counts as an import of
the file that defines `Flags`, not of `live/mod.rs`; a folder's own re-exports of its files are
names, not imports), and then:

- fails on every strongly connected group of two or more files (an import cycle);
- for core/src, fails when a module imports from a layer listed after its own in LAYERS
  (the order `core/src/lib.rs` documents), or when a top-level module is in no layer.

Run: `python3 tools/check_layers.py` (part of `make lint`). Exit status 1 on any problem.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom first: a module may use its own layer and those before it, never one after it.
LAYERS: list[tuple[str, list[str]]] = [
    ("primitives", ["time", "hash", "context", "error", "trace", "cache_key"]),
    ("conditions", ["condition", "ramp", "autopilot"]),
    ("document", ["document"]),
    ("evaluate", ["evaluate"]),
    ("runtime state", ["runtime"]),
    ("live", ["live"]),
    ("load and tooling", ["load", "lint", "admin", "review"]),
    ("binding boundary", ["codes"]),
]

# Crates whose import cycles are printed as warnings instead of failing the check (for a crate
# being untangled). Empty: every crate must be free of cycles.
KNOWN_CYCLES: set[str] = set()

CRATES: list[tuple[str, bool]] = [
    ("core/src", True),
    ("bindings-python/src", False),
    ("bindings-node/src", False),
]


def module_of(src: Path, path: Path) -> tuple[str, ...]:
    """The module path of a source file: core/src/live/run.rs -> ("live", "run")."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def strip_code(text: str) -> str:
    """The text without comments, string literals and test modules."""
    # A `#[cfg(test)]` module runs to the end of the file in this code base (house habit).
    test = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(\w+\))?\s+)?mod\s+\w+\s*\{", text, re.M)
    if test:
        text = text[: test.start()]
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"'(?:\\.|[^'\\])'", "' '", text)
    return text


def expand_use(tree: str) -> list[tuple[list[str], str]]:
    """Expands a use tree (`a::{b, c::{d as e}}`) into (path, bound name) pairs."""
    tree = re.sub(r"\s+", " ", tree).strip()
    tree = re.sub(r"\s*(::|\{|\}|,)\s*", r"\1", tree)
    out: list[tuple[list[str], str]] = []

    def walk(prefix: list[str], t: str) -> None:
        t = t.strip()
        if not t:
            return
        brace = t.find("{")
        if brace >= 0 and t.endswith("}"):
            head = [p for p in t[:brace].split("::") if p]
            inner = t[brace + 1 : -1]
            depth, start = 0, 0
            for i, ch in enumerate(inner):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    walk(prefix + head, inner[start:i])
                    start = i + 1
            walk(prefix + head, inner[start:])
            return
        name_part, _, alias = t.partition(" as ")
        segs = [p for p in name_part.split("::") if p]
        if not segs:
            return
        if segs[-1] == "self":
            segs = segs[:-1]
        bound = alias or (segs[-1] if segs else "")
        out.append((prefix + segs, bound))

    walk([], tree)
    return out


def is_below(path: list[str], module: tuple[str, ...]) -> bool:
    """Whether `crate::…` path names something inside a child of `module`: a folder's `mod.rs`
    re-exporting its own files (`pub use handle::Flags`) is a name, not a dependency, and users
    of the name are resolved to the child that defines it."""
    inner = path[1:]
    return len(inner) > len(module) + 1 and tuple(inner[: len(module)]) == module


class Crate:
    def __init__(self, src: Path) -> None:
        self.src = src
        self.files: dict[tuple[str, ...], Path] = {}
        for path in sorted(src.rglob("*.rs")):
            self.files[module_of(src, path)] = path
        self.code = {m: strip_code(p.read_text()) for m, p in self.files.items()}
        # name -> absolute path, per module, from `pub use` / `pub(crate) use` re-exports.
        self.reexports: dict[tuple[str, ...], dict[str, list[str]]] = {}
        self.uses: dict[tuple[str, ...], list[list[str]]] = {}
        for m, code in self.code.items():
            reex: dict[str, list[str]] = {}
            used: list[list[str]] = []
            for stmt in re.finditer(r"(\bpub(?:\([\w:]+\))?\s+)?\buse\s+([^;]+);", code):
                for path, bound in expand_use(stmt.group(2)):
                    absolute = self.absolute(m, path)
                    if absolute is None:
                        continue
                    facade = bool(stmt.group(1)) and is_below(absolute, m)
                    if not facade:
                        used.append(absolute)
                    if stmt.group(1) and bound and bound != "*":
                        reex[bound] = absolute
            body = re.sub(r"\buse\s+[^;]+;", " ", code)
            for inline in re.finditer(r"(?<![\w:])crate((?:::\w+)+)", body):
                used.append(["crate"] + inline.group(1).split("::")[1:])
            self.reexports[m] = reex
            self.uses[m] = used

    def absolute(self, module: tuple[str, ...], path: list[str]) -> list[str] | None:
        """`crate::…` form of a use path written in `module`; None for other crates."""
        if not path:
            return None
        head = path[0]
        if head == "crate":
            return path
        if head in ("super", "self"):
            base = list(module)
            rest = list(path)
            while rest and rest[0] in ("super", "self"):
                if rest.pop(0) == "super":
                    base = base[:-1]
            return ["crate"] + base + rest
        if tuple(module) + (head,) in self.files:  # a child module, named relatively
            return ["crate"] + list(module) + path
        return None

    def resolve(self, path: list[str], seen: int = 0) -> tuple[str, ...] | None:
        """The module (file) that defines what `crate::…` path names."""
        segs = path[1:]
        best: tuple[str, ...] = ()
        for i in range(len(segs), -1, -1):
            if tuple(segs[:i]) in self.files:
                best = tuple(segs[:i])
                break
        rest = segs[len(best) :]
        if rest and seen < 16:
            target = self.reexports.get(best, {}).get(rest[0])
            if target is not None and target != path:
                return self.resolve(target + rest[1:], seen + 1)
        return best

    def graph(self) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
        edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in self.files}
        for m, used in self.uses.items():
            for path in used:
                target = self.resolve(path)
                if target is not None and target != m and target in self.files:
                    edges[m].add(target)
        return edges


def cycles(edges: dict[tuple[str, ...], set[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index: dict[tuple[str, ...], int] = {}
    low: dict[tuple[str, ...], int] = {}
    stack: list[tuple[str, ...]] = []
    on_stack: set[tuple[str, ...]] = set()
    found: list[list[tuple[str, ...]]] = []
    counter = [0]

    def connect(v: tuple[str, ...]) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def name(crate: str, module: tuple[str, ...]) -> str:
    return f"{crate}:" + ("::".join(module) or "(root)")


def layer_of(module: tuple[str, ...]) -> int | None:
    for rank, (_, tops) in enumerate(LAYERS):
        if module and module[0] in tops:
            return rank
    return None


def main() -> int:
    problems: list[str] = []
    warnings: list[str] = []
    for rel, layered in CRATES:
        src = ROOT / rel
        if not src.is_dir():
            continue
        crate = Crate(src)
        edges = crate.graph()
        for group in cycles(edges):
            inside = [f"{name(rel, a)} -> {name(rel, b)}" for a in group for b in sorted(edges[a]) if b in group]
            message = f"import cycle in {rel}: " + "; ".join(inside)
            if rel in KNOWN_CYCLES:
                warnings.append(f"warning (known, listed in KNOWN_CYCLES): {message}")
            else:
                problems.append(message)
        if not layered:
            continue
        for module in sorted(crate.files):
            if not module:
                continue
            rank = layer_of(module)
            if rank is None:
                problems.append(
                    f"{name(rel, module)} is in no layer: add `{module[0]}` to LAYERS in "
                    "tools/check_layers.py and to the list in core/src/lib.rs"
                )
                continue
            for target in sorted(edges[module]):
                if not target:
                    problems.append(f"{name(rel, module)} imports from the crate root (lib.rs)")
                    continue
                to = layer_of(target)
                if to is not None and to > rank:
                    problems.append(
                        f"{name(rel, module)} ({LAYERS[rank][0]}) imports {name(rel, target)} "
                        f"({LAYERS[to][0]}), a layer above it"
                    )
    for warning in warnings:
        print(warning, file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    known = f" ({len(warnings)} known binding cycle(s) above)" if warnings else ""
    print(f"check_layers: core/src has no import cycle and no upward import{known}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
