"""pytest helpers for applications that use flagrail, loaded by pytest on its own (the package
registers this module as a ``pytest11`` plugin).

Two fixtures:

- ``flagrail_flags``: a ``Flags`` built for the test, closed after it. The flags come from the
  ``flagrail`` marker, else from the ``flagrail_document`` fixture (override it in your
  ``conftest.py``)::

      @pytest.mark.flagrail({"support-bot": "v2.2"})
      def test_uses_the_new_prompt(flagrail_flags):
          assert flagrail_flags.variant("support-bot", user).id == "v2.2"

  A mapping with a ``"flags"`` key is a whole document (``Flags.from_dict``); any other mapping
  is the short form of ``Flags.for_tests``.

- ``flagrail_document``: the mapping ``flagrail_flags`` uses when the test has no marker
  (empty by default).

To force a variant of *your application's* ``Flags`` in one test, use
``with flags.override(flag, variant):`` instead: the override ends with the block, also when it
raises, and other threads and tasks never see it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from ._flagrail import Flags

__all__ = ["flagrail_document", "flagrail_flags", "flags_for"]


def flags_for(mapping: Mapping[str, Any]) -> Flags:
    """``Flags.from_dict`` for a whole document (it has ``"flags"``), ``Flags.for_tests`` for
    the short form."""
    if "flags" in mapping and isinstance(mapping["flags"], Mapping):
        return Flags.from_dict(mapping)
    return Flags.for_tests(mapping)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "flagrail(mapping): the flags of the flagrail_flags fixture (Flags.for_tests form, "
        "or a whole document)",
    )


@pytest.fixture
def flagrail_document() -> Mapping[str, Any]:
    """The flags ``flagrail_flags`` builds when the test has no ``flagrail`` marker."""
    return {}


@pytest.fixture
def flagrail_flags(
    request: pytest.FixtureRequest, flagrail_document: Mapping[str, Any]
) -> Iterator[Flags]:
    """A ``Flags`` for this test (see the module docs), closed after it."""
    marker = request.node.get_closest_marker("flagrail")
    mapping: Mapping[str, Any] = flagrail_document
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], Mapping):
            raise TypeError("@pytest.mark.flagrail takes one mapping of flags")
        mapping = marker.args[0]
    flags = flags_for(mapping)
    with flags:
        yield flags
