"""The typed surface: the hand-written stub matches the native module.

`make test-python` also runs `python -m mypy.stubtest flagrail._flagrail` (signatures and
types); this test checks what stubtest does not: every public object is documented, and the
stub's docstrings are the runtime docstrings (the Rust `///` comments), word for word.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any, Iterator

import flagrail
import flagrail._flagrail as native

STUB = Path(native.__file__).with_name("_flagrail.pyi")


def _normalize(text: str | None) -> str:
    return re.sub(r"\s+", " ", inspect.cleandoc(text or "")).strip()


def _stub_docs() -> Iterator[tuple[str, str | None]]:
    tree = ast.parse(STUB.read_text())
    docs: dict[str, str | None] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            docs[node.name] = ast.get_docstring(node)
        elif isinstance(node, ast.ClassDef):
            docs[node.name] = ast.get_docstring(node)
            for item in node.body:
                # Slot methods (`__getitem__`, `__eq__` …) carry CPython's generic docstrings.
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    # An overloaded method is documented once, on one of its overloads.
                    name = f"{node.name}.{item.name}"
                    docs[name] = docs.get(name) or ast.get_docstring(item)
    yield from docs.items()


def _runtime(dotted: str) -> Any:
    obj: Any = native
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_stub_docstrings_are_the_runtime_docstrings() -> None:
    mismatched = []
    for name, stub_doc in _stub_docs():
        runtime_doc = getattr(_runtime(name), "__doc__", None)
        assert stub_doc, f"{name} has no docstring in the stub"
        assert runtime_doc, f"{name} has no runtime docstring (add a /// comment in bindings-python/src)"
        if _normalize(stub_doc) != _normalize(runtime_doc):
            mismatched.append(f"{name}:\n  stub:    {_normalize(stub_doc)}\n  runtime: {_normalize(runtime_doc)}")
    assert not mismatched, "\n".join(mismatched)


def test_stub_lists_every_public_runtime_name() -> None:
    names = {name for name, _ in _stub_docs() if "." not in name}
    public = {n for n in native.__all__ if not n.startswith("_") and not n.isupper() and n != "__version__"}
    assert public <= names


def test_package_exports_are_typed() -> None:
    package = Path(flagrail.__file__).parent
    assert (package / "py.typed").exists()
    assert STUB.exists()
