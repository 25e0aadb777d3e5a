"""Test helpers for users' own tests: Flags.for_tests, flags.override (scoped to a thread or
task, restored on exception) and the pytest plugin of flagrail.testing."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path

import pytest

from flagrail import DocumentError, Flags, InvalidArgumentError, Variant
from flagrail.testing import flags_for

from conftest import EXAMPLE

pytest_plugins = ["pytester"]

USER = {"user_id": "user-14", "plan": "pro", "email": "ada@example.com"}
ENTERPRISE = {"user_id": "u-2", "plan": "enterprise"}


@pytest.fixture
def flags() -> Flags:
    return Flags.from_file(EXAMPLE, reload=False)


def test_for_tests_builds_a_document_from_a_short_mapping() -> None:
    flags = Flags.for_tests(
        {
            "support-bot": {"stable": {"model": "m-1"}, "v2.2": {"model": "m-2"}, "default": "v2.2"},
            "tone": "friendly",
        }
    )
    v = flags.variant("support-bot", USER)
    assert (v.id, v["model"], v.reason, v.revision) == ("v2.2", "m-2", "DEFAULT", "for-tests")
    assert flags.variant("tone", USER).id == "friendly"
    assert flags.variant("tone", USER).payload == {}


def test_for_tests_keeps_a_flag_written_in_full() -> None:
    flags = Flags.for_tests(
        {
            "bot": {
                "variants": {"a": {}, "b": {}},
                "rules": [{"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "b"}],
            }
        }
    )
    assert flags.variant("bot", USER).id == "b"
    assert flags.variant("bot", ENTERPRISE).id == "a"


def test_for_tests_errors_name_the_problem() -> None:
    with pytest.raises(InvalidArgumentError, match='"bot"'):
        Flags.for_tests({"bot": 3})  # type: ignore[dict-item]
    with pytest.raises(DocumentError, match="flags.bot.default"):
        Flags.for_tests({"bot": {"x": {}, "default": "nope"}})


def test_override_serves_the_variant_and_restores(flags: Flags) -> None:
    before = flags.variant("support-bot", ENTERPRISE)
    assert before.id == "stable"
    with flags.override("support-bot", "v2.2") as scope:
        v = flags.variant("support-bot", ENTERPRISE)
        assert (v.id, v.reason, v.rule_id) == ("v2.2", "DEFAULT", None)
        assert flags.flag("support-bot").variant(USER).id == "v2.2"
        assert repr(scope) == "Override(flag=\"support-bot\", variant=\"v2.2\")"
    assert flags.variant("support-bot", ENTERPRISE).id == "stable"


def test_override_beats_a_kill(flags: Flags) -> None:
    flags.kill("support-bot")
    with flags.override("support-bot", "v2.2"):
        assert flags.variant("support-bot", USER).id == "v2.2"
    assert flags.variant("support-bot", USER).reason == "KILLED"


def test_overrides_nest_and_restore_on_exception(flags: Flags) -> None:
    with flags.override("support-bot", "v2.2"):
        with pytest.raises(RuntimeError):
            with flags.override("support-bot", "human"):
                assert flags.variant("support-bot", USER).id == "human"
                raise RuntimeError("boom")
        assert flags.variant("support-bot", USER).id == "v2.2"
    assert flags.variant("support-bot", ENTERPRISE).id == "stable"


def test_override_typos_fail_at_once(flags: Flags) -> None:
    with pytest.raises(InvalidArgumentError, match="no variant \"v9\""):
        with flags.override("support-bot", "v9"):
            pass
    with pytest.raises(InvalidArgumentError, match="no such flag"):
        with flags.override("suport-bot", "v2.2"):
            pass
    # A failed enter leaves nothing open.
    assert flags.variant("support-bot", ENTERPRISE).id == "stable"


def test_override_is_per_flags_instance(flags: Flags) -> None:
    other = Flags.from_file(EXAMPLE, reload=False)
    with flags.override("support-bot", "v2.2"):
        assert other.variant("support-bot", ENTERPRISE).id == "stable"


def test_call_starts_at_the_overridden_variant(flags: Flags) -> None:
    with flags.override("support-bot", "v2.2"):
        r = flags.call("support-bot", ENTERPRISE, lambda v: v.id)
    assert (r.variant.id, r.value) == ("v2.2", "v2.2")
    assert flags.call("support-bot", ENTERPRISE, lambda v: v.id).value == "stable"


def test_overrides_do_not_leak_between_threads(flags: Flags) -> None:
    inside = threading.Event()
    release = threading.Event()
    seen: dict[str, str | None] = {}

    def overriding() -> None:
        with flags.override("support-bot", "v2.2"):
            seen["overriding"] = flags.variant("support-bot", ENTERPRISE).id
            inside.set()
            release.wait(10)

    def plain() -> None:
        seen["plain"] = flags.variant("support-bot", ENTERPRISE).id

    t = threading.Thread(target=overriding)
    t.start()
    assert inside.wait(10)
    # The other thread's scope is open right now; this thread and a third one do not see it.
    assert flags.variant("support-bot", ENTERPRISE).id == "stable"
    u = threading.Thread(target=plain)
    u.start()
    u.join(10)
    release.set()
    t.join(10)
    assert seen == {"overriding": "v2.2", "plain": "stable"}


def test_overrides_do_not_leak_between_tasks(flags: Flags) -> None:
    async def main() -> dict[str, list[str | None]]:
        seen: dict[str, list[str | None]] = {"a": [], "b": []}
        both_inside = asyncio.Barrier(2)

        async def task(name: str, variant: str | None) -> None:
            if variant is None:
                await both_inside.wait()
                seen[name].append(flags.variant("support-bot", ENTERPRISE).id)
                await both_inside.wait()
                return
            with flags.override("support-bot", variant):
                await both_inside.wait()
                seen[name].append(flags.variant("support-bot", ENTERPRISE).id)
                r = await flags.acall("support-bot", ENTERPRISE, _model_of)
                seen[name].append(r.variant.id)
                await both_inside.wait()

        await asyncio.gather(task("a", "v2.2"), task("b", None))
        return seen

    assert asyncio.run(main()) == {"a": ["v2.2", "v2.2"], "b": ["stable"]}


async def _model_of(v: Variant) -> str:
    return str(v["model"])


def test_a_context_copied_inside_the_scope_keeps_it(flags: Flags) -> None:
    # contextvars semantics: a task or a copied context created inside the block sees it.
    with flags.override("support-bot", "v2.2"):
        copied = contextvars.copy_context()
    assert copied.run(lambda: flags.variant("support-bot", ENTERPRISE).id) == "v2.2"
    assert flags.variant("support-bot", ENTERPRISE).id == "stable"


def test_flags_for_takes_a_whole_document_too() -> None:
    flags = flags_for({"revision": "r-1", "flags": {"x": {"variants": {"on": {}}, "default": "on"}}})
    assert flags.revision == "r-1"
    assert flags_for({"x": "on"}).revision == "for-tests"


def test_pytest_plugin_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def flagrail_document():
    return {"support-bot": "stable"}
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.flagrail({"support-bot": {"stable": {}, "v2.2": {"model": "m-2"}, "default": "v2.2"}})
def test_marked(flagrail_flags):
    assert flagrail_flags.variant("support-bot", {"user_id": "u"}).id == "v2.2"
    with flagrail_flags.override("support-bot", "stable"):
        assert flagrail_flags.variant("support-bot", {"user_id": "u"}).id == "stable"

def test_from_conftest(flagrail_flags):
    assert flagrail_flags.variant("support-bot", {}).id == "stable"

def test_failing_inside_an_override(flagrail_flags):
    with flagrail_flags.override("support-bot", "stable"):
        assert False, "expected failure"
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2, failed=1)


def test_the_plugin_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11") if ep.name == "flagrail"}
    assert names == {"flagrail.testing"}
