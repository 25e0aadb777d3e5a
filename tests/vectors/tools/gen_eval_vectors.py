#!/usr/bin/env python3
"""Generate the flagrail evaluation and error vectors (hash_version 1).

Expected results are written down by hand from the rules in docs/flag-document.md; only the
bucket numbers are computed here, with the PyPI ``mmh3`` package as the independent reference
(``bucket = (mmh3(salt + unit) * W) >> 32``). Nothing here calls flagrail itself.

    /tmp/vecgen/bin/python tests/vectors/tools/gen_eval_vectors.py [--check]

Output: tests/vectors/v1/eval-targeting.json, eval-ramp.json, eval-kill.json, errors.json,
eval-hostile.json,
eval-state.json (sticky pins and budgets), cache-keys.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import mmh3
except ImportError:  # pragma: no cover
    sys.exit("mmh3 is required: /tmp/vecgen/bin/pip install mmh3==5.3.1")

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "tests" / "vectors" / "v1"
AT = "2026-11-21T12:00:00Z"


def bucket(salt: str, unit, total: int = 100_000) -> int:
    text = str(unit) if isinstance(unit, int) else unit
    h = mmh3.hash((salt + text).encode("utf-8"), 0, signed=False)
    return (h * total) >> 32


def result(variant, reason, rule_id=None, bucket_=None):
    return {"variant": variant, "reason": reason, "rule_id": rule_id, "bucket": bucket_}


# ---------------------------------------------------------------------------------------------
# Targeting: one flag per operator, each serving "yes" when its single rule matches.
# ---------------------------------------------------------------------------------------------

OPERATOR_FLAGS = {
    "op-eq-string": ({"attr": "plan", "op": "eq", "value": "pro"}, [
        ({"plan": "pro"}, True, "equal strings match"),
        ({"plan": "Pro"}, False, "eq is case-sensitive"),
        ({}, False, "a missing attribute never matches"),
        ({"plan": 1}, False, "a number never equals a string operand"),
    ]),
    "op-eq-number": ({"attr": "seats", "op": "eq", "value": 10}, [
        ({"seats": 10}, True, "integer equals the numeric operand"),
        ({"seats": 10.0}, True, "float 10.0 equals 10"),
        ({"seats": "10"}, False, "the string \"10\" is not the number 10"),
    ]),
    "op-eq-bool": ({"attr": "beta", "op": "eq", "value": True}, [
        ({"beta": True}, True, "true equals true"),
        ({"beta": False}, False, "false is not true"),
        ({"beta": 1}, False, "1 is not a boolean"),
    ]),
    "op-ne": ({"attr": "plan", "op": "ne", "value": "free"}, [
        ({"plan": "pro"}, True, "pro is not free"),
        ({"plan": "free"}, False, "free equals free"),
        ({}, False, "ne on a missing attribute is false, not true"),
        ({"plan": 3}, False, "ne on a wrong-typed attribute is false"),
    ]),
    "op-in": ({"attr": "country", "op": "in", "value": ["US", "CA", 7]}, [
        ({"country": "CA"}, True, "member of the list"),
        ({"country": "FR"}, False, "not a member"),
        ({"country": 7}, True, "numbers are members too"),
        ({"country": ["FR", "US"]}, True, "a list attribute is in when any item is"),
        ({"country": ["FR", "DE"]}, False, "a list attribute with no member item"),
    ]),
    "op-not-in": ({"attr": "country", "op": "not_in", "value": ["US", "CA"]}, [
        ({"country": "FR"}, True, "FR is not in the list"),
        ({"country": "US"}, False, "US is in the list"),
        ({}, False, "not_in on a missing attribute is false"),
    ]),
    "op-contains": ({"attr": "groups", "op": "contains", "value": "beta"}, [
        ({"groups": ["staff", "beta"]}, True, "a list containing the item"),
        ({"groups": ["betamax"]}, False, "list items are compared whole"),
        ({"groups": "closed-beta-2"}, True, "a string containing the substring"),
        ({"groups": 5}, False, "a number cannot contain"),
    ]),
    "op-starts-with": ({"attr": "model", "op": "starts_with", "value": ["claude-", "gpt-"]}, [
        ({"model": "claude-opus-4"}, True, "first prefix"),
        ({"model": "gpt-5"}, True, "second prefix"),
        ({"model": "llama-4"}, False, "no prefix matches"),
    ]),
    "op-ends-with": ({"attr": "email", "op": "ends_with", "value": "@acme.com"}, [
        ({"email": "ana@acme.com"}, True, "suffix matches"),
        ({"email": "ana@acme.com.evil.io"}, False, "suffix must be at the end"),
    ]),
    "op-matches": ({"attr": "path", "op": "matches", "value": "^/v[0-9]+/chat$"}, [
        ({"path": "/v2/chat"}, True, "regex matches"),
        ({"path": "/v2/chat/extra"}, False, "anchored regex does not match a longer path"),
        ({"path": ["/v2/chat"]}, False, "a list is not a string"),
    ]),
    "op-gt": ({"attr": "age_days", "op": "gt", "value": 30}, [
        ({"age_days": 31}, True, "31 > 30"),
        ({"age_days": 30}, False, "30 is not > 30"),
        ({"age_days": 30.5}, True, "floats compare numerically"),
        ({"age_days": "31"}, False, "a numeric string is not a number"),
    ]),
    "op-gte": ({"attr": "age_days", "op": "gte", "value": 30}, [
        ({"age_days": 30}, True, "30 >= 30"),
        ({"age_days": 29}, False, "29 < 30"),
    ]),
    "op-lt": ({"attr": "score", "op": "lt", "value": 0.5}, [
        ({"score": 0.25}, True, "0.25 < 0.5"),
        ({"score": 1}, False, "1 is not < 0.5"),
    ]),
    "op-lte": ({"attr": "score", "op": "lte", "value": 0.5}, [
        ({"score": 0.5}, True, "0.5 <= 0.5"),
        ({"score": True}, False, "a boolean is not a number"),
    ]),
    "op-semver-gte": ({"attr": "app_version", "op": "semver_gte", "value": "3.0.0"}, [
        ({"app_version": "3.0.0"}, True, "equal versions"),
        ({"app_version": "3.10.0"}, True, "3.10 > 3.9 numerically, not lexically"),
        ({"app_version": "3.0.0-beta.1"}, False, "a pre-release sorts before its release"),
        ({"app_version": "v4"}, True, "a leading v and missing parts are accepted in the context"),
        ({"app_version": "four"}, False, "an unparsable version never matches"),
    ]),
    "op-semver-lt": ({"attr": "app_version", "op": "semver_lt", "value": "2.1.0"}, [
        ({"app_version": "2.0.9"}, True, "2.0.9 < 2.1.0"),
        ({"app_version": "2.1.0+build.7"}, False, "build metadata is ignored for precedence"),
    ]),
    "op-semver-eq": ({"attr": "app_version", "op": "semver_eq", "value": "1.2.0"}, [
        ({"app_version": "1.2"}, True, "1.2 reads as 1.2.0"),
        ({"app_version": "1.2.1"}, False, "different patch"),
    ]),
    "op-before": ({"attr": "signup", "op": "before", "value": "2026-01-01T00:00:00Z"}, [
        ({"signup": "2025-12-31T23:59:59Z"}, True, "one second before"),
        ({"signup": "2026-01-01"}, False, "the same instant is not before"),
        ({"signup": 1735689600}, True, "numbers are Unix seconds (2025-01-01)"),
        ({"signup": "last year"}, False, "an unparsable time never matches"),
    ]),
    "op-after": ({"attr": "signup", "op": "after", "value": "2026-01-01"}, [
        ({"signup": "2026-01-01T00:00:00.001Z"}, True, "one millisecond after"),
        ({"signup": "2026-01-01T01:00:00+02:00"}, False, "offsets are honoured (23:00Z the day before)"),
    ]),
    "op-exists": ({"attr": "org_id", "op": "exists"}, [
        ({"org_id": "o-1"}, True, "present"),
        ({"org_id": {"nested": 1}}, True, "present even with an unusable type"),
        ({}, False, "absent"),
        ({"org_id": None}, False, "null counts as absent"),
    ]),
    "logic-all": ({"all": [{"attr": "plan", "op": "eq", "value": "pro"},
                           {"attr": "seats", "op": "gte", "value": 5}]}, [
        ({"plan": "pro", "seats": 5}, True, "both hold"),
        ({"plan": "pro", "seats": 4}, False, "one fails"),
    ]),
    "logic-any": ({"any": [{"attr": "plan", "op": "eq", "value": "pro"},
                           {"segment": "internal"}]}, [
        ({"plan": "free", "email": "x@acme.com"}, True, "the segment holds"),
        ({"plan": "free", "email": "x@other.com"}, False, "neither holds"),
    ]),
    "logic-not": ({"not": {"segment": "internal"}}, [
        ({"email": "x@other.com"}, True, "not internal"),
        ({"email": "x@acme.com"}, False, "internal"),
        ({}, True, "a missing attribute makes the inner condition false, so not is true"),
    ]),
    "segment-nested": ({"segment": "staff-or-beta"}, [
        ({"email": "x@acme.com"}, True, "through the internal segment"),
        ({"groups": ["beta"]}, True, "through the beta segment"),
        ({"groups": ["gamma"], "email": "x@other.com"}, False, "neither segment"),
    ]),
}

SEGMENTS = {
    "internal": {"attr": "email", "op": "ends_with", "value": "@acme.com"},
    "beta": {"attr": "groups", "op": "contains", "value": "beta"},
    "staff-or-beta": {"any": [{"segment": "internal"}, {"segment": "beta"}]},
}


def targeting_file():
    flags = {}
    cases = []
    for key, (when, examples) in OPERATOR_FLAGS.items():
        flags[key] = {
            "variants": {"no": {"matched": False}, "yes": {"matched": True}},
            "default": "no",
            "rules": [{"id": "only", "when": when, "serve": "yes"}],
        }
        for i, (context, matches, description) in enumerate(examples, 1):
            cases.append({
                "id": f"{key}-{i}",
                "description": f"{key}: {description}",
                "flag": key,
                "context": context,
                "at": AT,
                "expected": result("yes", "TARGETING_MATCH", "only") if matches else result("no", "DEFAULT"),
            })

    # Rule order, serve vs split, unnamed rules, caller defaults, kill.
    flags["ordered"] = {
        "variants": {"a": {}, "b": {}, "c": {}, "d": {}},
        "default": "d",
        "rules": [
            {"id": "first", "when": {"attr": "plan", "op": "eq", "value": "enterprise"}, "serve": "a"},
            {"when": {"segment": "internal"}, "serve": "b"},
            {"id": "half", "when": {"attr": "plan", "op": "eq", "value": "pro"},
             "split": [{"variant": "b", "weight": 1}, {"variant": "c", "weight": 1}]},
        ],
    }
    ordered = [
        ({"plan": "enterprise", "email": "x@acme.com", "user_id": "u1"}, result("a", "TARGETING_MATCH", "first"),
         "the first matching rule wins even when later rules match too"),
        ({"plan": "free", "email": "x@acme.com"}, result("b", "TARGETING_MATCH", "rules[1]"),
         "an unnamed rule is named by its position"),
        ({"plan": "free"}, result("d", "DEFAULT"), "no rule matches: the default"),
    ]
    for uid in ["user-1", "user-2", "user-3", "user-4", "user-5", "ü-ß", "🦀"]:
        b = bucket("ordered", uid, 2)
        ordered.append(({"plan": "pro", "user_id": uid}, result("bc"[b], "SPLIT", "half", b),
                        f"a targeted 1:1 split places {uid!r} in bucket {b} of 2"))
    ordered.append(({"plan": "pro"}, result("d", "DEFAULT"),
                    "the split cannot bucket a missing unit: the rule is skipped, never a random pick"))
    ordered.append(({"plan": "pro", "user_id": ""}, result("d", "DEFAULT"), "an empty unit is skipped too"))
    ordered.append(({"plan": "pro", "user_id": 1.5}, result("d", "DEFAULT"), "a float unit cannot be bucketed"))
    ordered.append(({"plan": "pro", "user_id": True}, result("d", "DEFAULT"), "a boolean unit cannot be bucketed"))
    b = bucket("ordered", 12345, 2)
    ordered.append(({"plan": "pro", "user_id": 12345}, result("bc"[b], "SPLIT", "half", b),
                    "an integer unit is bucketed as its decimal text"))
    for i, (context, expected, description) in enumerate(ordered, 1):
        cases.append({"id": f"ordered-{i}", "description": description, "flag": "ordered",
                      "context": context, "at": AT, "expected": expected})

    flags["killed"] = {
        "variants": {"on": {"model": "big"}, "off": {"ai": False}},
        "default": "on",
        "kill": {"active": True, "serve": "off", "reason": "incident 42"},
        "rules": [{"id": "everyone", "serve": "on"}],
    }
    flags["killed-no-serve"] = {
        "variants": {"on": {}, "base": {}},
        "default": "base",
        "kill": {"active": True},
        "rules": [{"id": "everyone", "serve": "on"}],
    }
    cases += [
        {"id": "kill-1", "description": "an active flag kill serves the kill variant before any rule",
         "flag": "killed", "context": {"user_id": "u"}, "at": AT, "expected": result("off", "KILLED")},
        {"id": "kill-2", "description": "a kill without serve serves the default",
         "flag": "killed-no-serve", "context": {}, "at": AT, "expected": result("base", "KILLED")},
        {"id": "not-found-1", "description": "an unknown flag gives the caller's default",
         "flag": "no-such-flag", "context": {}, "at": AT, "default": "fallback",
         "expected": result("fallback", "FLAG_NOT_FOUND")},
        {"id": "not-found-2", "description": "an unknown flag without a caller default gives no variant",
         "flag": "no-such-flag", "context": {}, "at": AT, "expected": result(None, "FLAG_NOT_FOUND")},
        {"id": "default-ignored", "description": "the caller's default is only for unknown flags",
         "flag": "ordered", "context": {}, "at": AT, "default": "fallback", "expected": result("d", "DEFAULT")},
    ]
    document = {"revision": "vectors-targeting-1", "segments": SEGMENTS, "flags": flags}
    return {"description": "Targeting operators, rule order, unbucketable units, kill switches and unknown flags.",
            "hash_version": 1, "document": document, "cases": cases}


# ---------------------------------------------------------------------------------------------
# Ramps and splits along time.
# ---------------------------------------------------------------------------------------------

RAMP_STEPS = [{"percent": 1, "hold": "24h"}, {"percent": 5, "hold": "48h"},
              {"percent": 25, "hold": "72h"}, {"percent": 50, "hold": "48h"}, {"percent": 100}]
# (instant, percent live then)
RAMP_TIMES = [
    ("2026-11-21T08:59:59Z", 0), ("2026-11-21T09:00:00Z", 1), ("2026-11-22T08:59:59.999Z", 1),
    ("2026-11-22T09:00:00Z", 5), ("2026-11-24T09:00:00Z", 25), ("2026-11-27T09:00:00Z", 50),
    ("2026-11-29T09:00:00Z", 100), ("2027-06-01T00:00:00Z", 100),
]
UNITS = ["user-1", "user-7", "user-42", "user-1337", "user-99999", "zoë", "用户-3", "👩‍💻-9", 7, -12, 9007199254740993]


def ramp_file():
    flags = {
        "canary": {
            "variants": {"stable": {}, "candidate": {}},
            "default": "stable",
            "rules": [{"id": "ramp", "ramp": {"variant": "candidate", "start": "2026-11-21T09:00:00Z", "steps": RAMP_STEPS}}],
        },
        "canary-paused": {
            "salt": "canary",
            "variants": {"stable": {}, "candidate": {}},
            "default": "stable",
            "rules": [{"id": "ramp", "ramp": {"variant": "candidate", "start": "2026-11-21T09:00:00Z",
                                               "steps": RAMP_STEPS, "paused_at": "2026-11-23T00:00:00Z"}}],
        },
        "canary-rolled-back": {
            "salt": "canary",
            "variants": {"stable": {}, "candidate": {}},
            "default": "stable",
            "rules": [{"id": "ramp", "ramp": {"variant": "candidate", "start": "2026-11-21T09:00:00Z",
                                               "steps": RAMP_STEPS, "rolled_back": True}}],
        },
        "canary-baseline": {
            "salt": "canary",
            "variants": {"stable": {}, "candidate": {}, "control": {}},
            "default": "stable",
            "rules": [{"id": "ramp", "ramp": {"variant": "candidate", "baseline": "control",
                                               "start": "2026-11-21T09:00:00Z", "steps": RAMP_STEPS}}],
        },
        "by-conversation": {
            "bucket_by": "conversation_id",
            "variants": {"a": {}, "b": {}, "c": {}},
            "default": "a",
            "rules": [{"id": "thirds", "split": [{"variant": "a", "percent": 33.333},
                                                  {"variant": "b", "percent": 33.333},
                                                  {"variant": "c", "percent": 33.334}]}],
        },
        "rule-override": {
            "variants": {"a": {}, "b": {}},
            "default": "a",
            "rules": [{"id": "per-org", "bucket_by": "org_id", "salt": "shared-salt",
                       "split": [{"variant": "a", "weight": 70}, {"variant": "b", "weight": 30}]}],
        },
    }
    cases = []
    for flag, paused, rolled, baseline in [("canary", False, False, False), ("canary-paused", True, False, False),
                                           ("canary-rolled-back", False, True, False),
                                           ("canary-baseline", False, False, True)]:
        salt = "canary"
        for at, percent in RAMP_TIMES:
            live = percent
            if paused and at > "2026-11-23T00:00:00Z":
                live = 5  # the step live at the pause instant holds
            if rolled:
                live = 0
            for unit in UNITS:
                b = bucket(salt, unit)
                inside = b < live * 1000
                if inside:
                    expected = result("candidate", "SPLIT", "ramp", b)
                elif baseline:
                    expected = result("control", "SPLIT", "ramp", b)
                else:
                    expected = result("stable", "DEFAULT")
                cases.append({
                    "id": f"{flag}-{at}-{unit}",
                    "description": f"{flag} at {at} ({live} % live): unit {unit!r} has bucket {b} of 100000 -> {expected['variant']}",
                    "flag": flag, "context": {"user_id": unit}, "at": at, "expected": expected,
                })
    for i, conv in enumerate(["c-1", "c-2", "c-3", "c-4", "c-5", "conv-ß"], 1):
        b = bucket("by-conversation", conv)
        variant = "a" if b < 33333 else "b" if b < 66666 else "c"
        cases.append({"id": f"by-conversation-{i}",
                      "description": f"bucket_by conversation_id: {conv!r} bucket {b} -> {variant}",
                      "flag": "by-conversation", "context": {"user_id": "ignored", "conversation_id": conv},
                      "at": AT, "expected": result(variant, "SPLIT", "thirds", b)})
    cases.append({"id": "by-conversation-missing", "description": "user_id is not the unit of this flag",
                  "flag": "by-conversation", "context": {"user_id": "u"}, "at": AT, "expected": result("a", "DEFAULT")})
    for i, org in enumerate(["org-1", "org-2", "org-3", "org-4", "org-5"], 1):
        b = bucket("shared-salt", org, 100)
        variant = "a" if b < 70 else "b"
        cases.append({"id": f"rule-override-{i}",
                      "description": f"rule-level bucket_by org_id and salt shared-salt: {org!r} bucket {b} of 100 -> {variant}",
                      "flag": "rule-override", "context": {"org_id": org, "user_id": "x"}, "at": AT,
                      "expected": result(variant, "SPLIT", "per-org", b)})
    document = {"revision": "vectors-ramp-1", "flags": flags}
    return {"description": "Ramps along their schedule (paused, rolled back, with a baseline), unit attributes and salts.",
            "hash_version": 1, "document": document, "cases": cases}


def kill_file():
    document = {
        "revision": "vectors-kill-1",
        "kill": {"active": True, "reason": "provider outage"},
        "flags": {
            "with-kill-variant": {"variants": {"ai": {}, "static": {"ai": False}}, "default": "ai",
                                  "kill": {"active": False, "serve": "static"}},
            "without": {"variants": {"ai": {}, "other": {}}, "default": "other",
                        "rules": [{"id": "all", "serve": "ai"}]},
        },
    }
    cases = [
        {"id": "document-kill-1", "description": "a document-wide kill serves each flag's kill variant, even when the flag's own switch is off",
         "flag": "with-kill-variant", "context": {}, "at": AT, "expected": result("static", "KILLED")},
        {"id": "document-kill-2", "description": "a document-wide kill serves the default of a flag without a kill variant",
         "flag": "without", "context": {"user_id": "u"}, "at": AT, "expected": result("other", "KILLED")},
        {"id": "document-kill-3", "description": "unknown flags are still FLAG_NOT_FOUND under a document kill",
         "flag": "nope", "context": {}, "at": AT, "default": "x", "expected": result("x", "FLAG_NOT_FOUND")},
    ]
    return {"description": "The document-wide kill switch.", "hash_version": 1, "document": document, "cases": cases}


# ---------------------------------------------------------------------------------------------
# Errors: documents that must be rejected, with every problem's path and code.
# ---------------------------------------------------------------------------------------------

def flag(**extra):
    base = {"variants": {"a": {}, "b": {}}, "default": "a"}
    base.update(extra)
    return base


def errors_file():
    cases = [
        ("unknown-operator", {"flags": {"support-bot": flag(rules=[
            {"serve": "a"}, {"serve": "b"},
            {"when": {"attr": "plan", "op": "equalz", "value": "x"}, "serve": "b"}])}},
         [("flags.support-bot.rules[2].when.op", "UNKNOWN_OPERATOR")], "the example of the design: a typo in an operator"),
        ("unknown-field", {"flags": {"f": flag(rulez=[])}},
         [("flags.f.rulez", "UNKNOWN_FIELD")], "a typo in a field name is rejected, never ignored"),
        ("unknown-top-field", {"flagz": {}, "flags": {}},
         [("flagz", "UNKNOWN_FIELD")], "unknown top-level field"),
        ("missing-flags", {"revision": "r"}, [("flags", "MISSING_FIELD")], "flags is required"),
        ("unknown-variant", {"flags": {"f": flag(default="c", rules=[{"serve": "z"}])}},
         [("flags.f.default", "UNKNOWN_VARIANT"), ("flags.f.rules[0].serve", "UNKNOWN_VARIANT")],
         "every reference to a missing variant is reported"),
        ("weights-do-not-add-up", {"flags": {"f": flag(rules=[{"split": [{"variant": "a", "percent": 60}, {"variant": "b", "percent": 30}]}])}},
         [("flags.f.rules[0].split", "INVALID_WEIGHTS")], "percentages must add up to 100"),
        ("zero-weights", {"flags": {"f": flag(rules=[{"split": [{"variant": "a", "weight": 0}, {"variant": "b", "weight": 0}]}])}},
         [("flags.f.rules[0].split", "INVALID_WEIGHTS")], "weights must not all be zero"),
        ("percent-precision", {"flags": {"f": flag(rules=[{"split": [{"variant": "a", "percent": 33.3335}, {"variant": "b", "percent": 66.6665}]}])}},
         [("flags.f.rules[0].split[0].percent", "PERCENT_PRECISION"), ("flags.f.rules[0].split[1].percent", "PERCENT_PRECISION")],
         "more than 0.001 % precision"),
        ("ramp-not-increasing", {"flags": {"f": flag(rules=[{"ramp": {"variant": "b", "start": "2026-11-21T09:00:00Z",
                                                                       "steps": [{"percent": 10, "hold": "1h"}, {"percent": 5}]}}])}},
         [("flags.f.rules[0].ramp.steps[1].percent", "RAMP_NOT_INCREASING")], "ramp percentages must increase"),
        ("bad-duration-and-date", {"flags": {"f": flag(expires="next week", rules=[{"ramp": {"variant": "b", "start": "2026-13-01",
                                                                                              "steps": [{"percent": 10, "hold": "1 day"}, {"percent": 100}]}}])}},
         [("flags.f.expires", "INVALID_DATE"), ("flags.f.rules[0].ramp.start", "INVALID_DATE"),
          ("flags.f.rules[0].ramp.steps[0].hold", "INVALID_DURATION")], "bad dates and durations"),
        ("autopilot-limits", {"flags": {"f": flag(rules=[{"ramp": {
            "variant": "b", "baseline": "a", "start": "2026-12-01T09:00:00Z", "paused_at": "2026-12-01T09:00:00Z",
            "steps": [{"percent": 1, "hold": "1h"}, {"percent": 100}],
            "autopilot": {"holds": [{"min": "6h", "max": "1h"}], "on_regression": "rollback",
                          "metrics": [{"metric": "qualty", "difference": 2}, {"metric": "cost", "ratio": 0.5}, {"metric": "latency_ms"}]}}}])}},
         [("flags.f.rules[0].ramp.autopilot.holds[0].min", "INVALID_VALUE"),
          ("flags.f.rules[0].ramp.autopilot.metrics[0].metric", "INVALID_VALUE"),
          ("flags.f.rules[0].ramp.autopilot.metrics[1].ratio", "INVALID_VALUE"),
          ("flags.f.rules[0].ramp.autopilot.metrics[2].difference", "MISSING_FIELD"),
          ("flags.f.rules[0].ramp.autopilot.on_regression", "INVALID_VALUE")],
         "an autopilot's holds, metrics and limits are checked field by field"),
        ("autopilot-ramp-without-baseline-or-pause", {"flags": {"f": flag(rules=[{"ramp": {
            "variant": "b", "start": "2026-12-01T09:00:00Z", "steps": [{"percent": 1, "hold": "1h"}, {"percent": 100}],
            "autopilot": {"holds": [{"min": "1h", "max": "2h"}], "metrics": [{"metric": "quality", "difference": 2}]}}}])}},
         [("flags.f.rules[0].ramp.baseline", "MISSING_FIELD"), ("flags.f.rules[0].ramp.paused_at", "MISSING_FIELD")],
         "an autopilot compares with the ramp's baseline and holds a paused ramp: both are required"),
        ("bad-regex", {"flags": {"f": flag(rules=[{"when": {"attr": "p", "op": "matches", "value": "(unclosed"}, "serve": "b"}])}},
         [("flags.f.rules[0].when.value", "INVALID_REGEX")], "a regex that does not compile"),
        ("huge-regex", {"flags": {"f": flag(rules=[{"when": {"attr": "p", "op": "matches", "value": "a{1000}{1000}"}, "serve": "b"}])}},
         [("flags.f.rules[0].when.value", "INVALID_REGEX")], "a regex over the compiled size bound"),
        ("segment-cycle", {"segments": {"a": {"segment": "b"}, "b": {"any": [{"segment": "a"}]}}, "flags": {}},
         [("segments.a", "SEGMENT_CYCLE"), ("segments.b", "SEGMENT_CYCLE")], "segments that reference each other"),
        ("unknown-segment", {"flags": {"f": flag(rules=[{"when": {"segment": "ghosts"}, "serve": "b"}])}},
         [("flags.f.rules[0].when.segment", "UNKNOWN_SEGMENT")], "a reference to a segment that does not exist"),
        ("duplicate-rule-id", {"flags": {"f": flag(rules=[{"id": "x", "serve": "a"}, {"id": "x", "serve": "b"}])}},
         [("flags.f.rules[1].id", "DUPLICATE_RULE_ID")], "rule ids are unique within a flag"),
        ("wrong-type", {"flags": {"f": flag(rules={"serve": "a"})}},
         [("flags.f.rules", "WRONG_TYPE")], "rules must be an array"),
        ("bad-semver", {"flags": {"f": flag(rules=[{"when": {"attr": "v", "op": "semver_gt", "value": "latest"}, "serve": "b"}])}},
         [("flags.f.rules[0].when.value", "INVALID_SEMVER")], "a semver operand must parse"),
        ("budget-needs-a-measure", {"flags": {"f": flag(budgets=[{"window": "1h", "action": "kill"}])}},
         [("flags.f.budgets[0].max_requests", "MISSING_FIELD")], "a budget counts requests or cost"),
        ("budget-two-measures", {"flags": {"f": flag(budgets=[{"max_requests": 5, "max_cost": 1.5, "window": "1h", "action": "kill"}])}},
         [("flags.f.budgets[0]", "INVALID_VALUE")], "a budget counts requests or cost, not both"),
        ("budget-serves-unknown-variant", {"flags": {"f": flag(budgets=[{"per": "user_id", "max_requests": 100, "window": "1h",
                                                                          "action": {"serve": "cheapest"}}])}},
         [("flags.f.budgets[0].action.serve", "UNKNOWN_VARIANT")], "a budget's downgrade names a variant of the flag"),
        ("budget-window", {"flags": {"f": flag(budgets=[{"max_cost": 10, "window": "hourly", "action": "kill"},
                                                         {"id": "w2", "max_cost": 10, "window": "90d", "action": "kill"}])}},
         [("flags.f.budgets[0].window", "INVALID_DURATION"), ("flags.f.budgets[1].window", "INVALID_VALUE")],
         "a budget window is a duration of at most 31 days"),
        ("duplicate-budget-id", {"flags": {"f": flag(budgets=[{"id": "x", "max_requests": 5, "window": "1h", "action": "kill"},
                                                               {"id": "x", "max_cost": 5, "window": "1d", "action": "kill"}])}},
         [("flags.f.budgets[1]", "DUPLICATE_BUDGET_ID")], "budget ids are unique within a flag"),
        ("document-budget-serves", {"budgets": [{"max_cost": 500, "window": "1d", "action": {"serve": "a"}}], "flags": {}},
         [("budgets[0].action", "INVALID_VALUE")], "a document-wide budget can only kill (variants belong to flags)"),
        ("sticky-ttl", {"flags": {"f": flag(sticky={"by": "conversation_id"}), "g": flag(sticky={"ttl": "500ms"})}},
         [("flags.f.sticky.ttl", "MISSING_FIELD"), ("flags.g.sticky.ttl", "INVALID_VALUE")], "a sticky pin needs a TTL of at least 1s"),
        ("shadow-of-static-variant", {"flags": {"f": flag(variants={"a": {}, "b": {"ai": False}},
                                                           shadow={"variant": "b", "percent": 10})}},
         [("flags.f.shadow.variant", "INVALID_VALUE")], "a shadow variant must call a model"),
        ("shadow-fields", {"flags": {"f": flag(shadow={"variant": "b", "percent": 0, "max_cost_per_hour": -1})}},
         [("flags.f.shadow.percent", "INVALID_VALUE"), ("flags.f.shadow.max_cost_per_hour", "INVALID_VALUE")],
         "a shadow samples more than 0 % and caps its cost above 0"),
        ("reserved-flag-key", {"flags": {"$budgets": flag()}},
         [("flags.$budgets", "INVALID_VALUE")], "flag keys starting with $ are reserved for metrics() entries"),
        ("hash-version", {"hash_version": 2, "flags": {}},
         [("hash_version", "UNSUPPORTED_HASH_VERSION")], "an unknown bucketing version"),
        ("many-problems", {"flags": {"f": {"variants": {}, "default": "a", "owner": 5}}},
         [("flags.f.variants", "INVALID_VALUE"), ("flags.f.owner", "WRONG_TYPE"), ("flags.f.default", "UNKNOWN_VARIANT")],
         "all problems of a document are reported, not only the first"),
    ]
    cases += hostile_error_cases()
    out = []
    for case_id, document, problems, description in cases:
        out.append({"id": f"error-{case_id}", "description": description, "document": document,
                    "problems": [{"path": p, "code": c} for p, c in problems]})
    return {"description": "Documents that must be rejected, with the path and code of every problem.",
            "hash_version": 1, "cases": out}


def compact(document) -> str:
    """A document as JSON text: for what a parsed value cannot carry (duplicate keys, 1.0 vs 1,
    more decimals than a float keeps) and to keep large generated documents on one line."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


# The loader's bounds (core/src/load/mod.rs, core/src/condition.rs), documented in
# docs/flag-document.md.
MAX_CONDITION_DEPTH = 128
MAX_JSON_DEPTH = 128
MAX_FLAG_COST = 10_000
SEARCH_COST = 8
MAX_COMPARED_BYTES = 4096


def segment_chain(length: int) -> dict:
    """s0 -> s1 -> ... -> s<length-1>, the last one a test: s<i> is (length - i) levels deep."""
    segments = {f"s{i}": {"segment": f"s{i + 1}"} for i in range(length - 1)}
    segments[f"s{length - 1}"] = {"attr": "plan", "op": "eq", "value": "pro"}
    return segments


def hostile_error_cases():
    """Documents that once crashed, stalled or meant different things to different loaders
    (issue 14). A string document is JSON text and goes through the text entry only."""
    chain = 4000
    # The bound is crossed at the one segment deeper than the limit whose reference is not.
    crossing = chain - MAX_CONDITION_DEPTH - 1
    deep_json = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    split_text = compact({"flags": {"f": flag(rules=[{"split": [{"variant": "a", "percent": 5005},
                                                                 {"variant": "b", "percent": 4995}]}])}})
    split_text = split_text.replace("5005", "50.0000000000000001").replace("4995", "49.9999999999999999")
    return [
        ("duplicate-key-kill-active",
         '{"flags": {"f": {"variants": {"a": {}, "b": {}}, "default": "a", '
         '"kill": {"active": true, "serve": "b", "active": false}}}}',
         [("flags.f.kill.active", "DUPLICATE_KEY")],
         "a repeated key is rejected: a reader that keeps the last would leave a killed flag live"),
        ("duplicate-flag-and-variant",
         '{"flags": {"f": {"variants": {"a": {}, "a": {"model": "m"}}, "default": "a"}, '
         '"f": {"variants": {"b": {}}, "default": "b"}}}',
         [("flags.f.variants.a", "DUPLICATE_KEY"), ("flags.f", "DUPLICATE_KEY")],
         "duplicate flag keys and variant ids are named by their path"),
        ("hash-version-float", '{"hash_version": 1.0, "flags": {}}',
         [("hash_version", "UNSUPPORTED_HASH_VERSION")], "hash_version is the integer 1: 1.0 is another value"),
        ("hash-version-string", {"hash_version": "1", "flags": {}},
         [("hash_version", "UNSUPPORTED_HASH_VERSION")], "hash_version is the integer 1, not the string \"1\""),
        ("empty-tags", {"flags": {"f": flag(tags=[])}},
         [("flags.f.tags", "WRONG_TYPE")], "tags is a string or a non-empty array (leave it out instead of [])"),
        ("negative-max-tokens", {"flags": {"f": flag(variants={"a": {"max_tokens": -5}, "b": {}})}},
         [("flags.f.variants.a.max_tokens", "INVALID_VALUE")], "max_tokens is a whole number of at least 1"),
        ("byte-order-mark", "\ufeff" + compact({"flagz": {}, "flags": {}}),
         [("flagz", "UNKNOWN_FIELD")], "a UTF-8 byte-order mark is skipped: the document itself is judged"),
        ("condition-attr-typo", {"flags": {"f": flag(rules=[{"when": {"atr": "plan", "op": "eq", "value": "x"}, "serve": "b"}])}},
         [("flags.f.rules[0].when.atr", "UNKNOWN_FIELD")], "a typo of attr is an unknown field (with a did-you-mean)"),
        ("unknown-metric-hides-nothing", {"flags": {"f": flag(guardrails=[{"metric": "eror_rate", "max": -1, "window": "soon",
                                                                           "action": "explode"}])}},
         [("flags.f.guardrails[0].metric", "INVALID_VALUE"), ("flags.f.guardrails[0].max", "INVALID_VALUE"),
          ("flags.f.guardrails[0].window", "INVALID_DURATION"), ("flags.f.guardrails[0].action", "INVALID_VALUE")],
         "an unknown guardrail metric does not hide the guardrail's other problems"),
        ("percent-beyond-float-precision", split_text,
         [("flags.f.rules[0].split[0].percent", "PERCENT_PRECISION"),
          ("flags.f.rules[0].split[1].percent", "PERCENT_PRECISION")],
         "50.0000000000000001 reads as the float 50.0, but the text asks for more than 0.001 % (judged on the text)"),
        ("segment-chain-4000", compact({"segments": segment_chain(chain), "flags": {
            "f": flag(rules=[{"when": {"segment": "s0"}, "serve": "b"}])}}),
         [(f"segments.s{crossing}", "NESTING_TOO_DEEP")],
         f"a chain of {chain} segment references is one problem, where it crosses the depth bound, not a crash"),
        ("json-nesting", deep_json, [("", "NESTING_TOO_DEEP")],
         f"arrays and objects nest at most {MAX_JSON_DEPTH} levels"),
        ("flag-too-complex", compact({"flags": {"f": flag(rules=[{"when": {"any": [
            {"attr": "text", "op": "contains", "value": f"w{i}"} for i in range(MAX_FLAG_COST // SEARCH_COST + 1)]},
            "serve": "b"}])}}),
         [("flags.f", "FLAG_TOO_COMPLEX")],
         f"one evaluation may take at most {MAX_FLAG_COST} steps (a string search counts {SEARCH_COST})"),
        ("operand-longer-than-compared", {"flags": {"f": flag(rules=[
            {"when": {"attr": "text", "op": "eq", "value": "x" * (MAX_COMPARED_BYTES + 1)}, "serve": "b"},
            {"when": {"attr": "text", "op": "contains", "value": ["ok", "y" * (MAX_COMPARED_BYTES + 1)]}, "serve": "b"}])}},
         [("flags.f.rules[0].when.value", "INVALID_VALUE"), ("flags.f.rules[1].when.value[1]", "INVALID_VALUE")],
         f"a condition compares at most {MAX_COMPARED_BYTES} bytes of a value: a longer operand could never match"),
    ]


def hostile_file():
    """Documents at the bounds that must load and evaluate quickly in every language."""
    depth = 40
    diamond = {f"d{i}": {"all": [{"segment": f"d{i + 1}"}, {"any": [{"segment": f"d{i + 1}"}]}]} for i in range(depth)}
    diamond[f"d{depth}"] = {"attr": "plan", "op": "eq", "value": "pro"}
    chain_length = MAX_CONDITION_DEPTH - 1  # the rule's {"segment": "s0"} is one level more
    segments = {**diamond, **segment_chain(chain_length)}
    document = {
        "revision": "vectors-hostile-1",
        "segments": segments,
        "flags": {
            "diamond": flag(rules=[{"id": "deep", "when": {"segment": "d0"}, "serve": "b"}]),
            "chain": flag(rules=[{"id": "long", "when": {"segment": "s0"}, "serve": "b"}]),
            "float-weights": flag(bucket_by="user_id",
                                  rules=[{"id": "w", "split": [{"variant": "a", "weight": -0.0},
                                                               {"variant": "b", "weight": 1.0}]}]),
        },
    }
    cases = [
        ("diamond-match", "diamond", {"plan": "pro"}, result("b", "TARGETING_MATCH", "deep"),
         f"a diamond of {depth} shared segments (2^{depth} paths) is decided once per segment"),
        ("diamond-miss", "diamond", {"plan": "free"}, result("a", "DEFAULT"),
         "... and a miss too, which must visit every segment"),
        ("chain-at-the-bound", "chain", {"plan": "pro"}, result("b", "TARGETING_MATCH", "long"),
         f"a chain of {chain_length} references is exactly at the depth bound and loads"),
        ("float-weights", "float-weights", {"user_id": "u-1"}, result("b", "SPLIT", "w", 0),
         "weights are judged by value: -0 and 1.0 are the weights 0 and 1"),
    ]
    return {"description": "Documents at the loader's bounds (segment diamonds, reference chains, weights "
                           "written as floats) that load and evaluate quickly everywhere.",
            "hash_version": 1, "document": document,
            "cases": [{"id": f"hostile-{i}", "description": d, "flag": f, "context": c, "at": AT, "expected": e}
                      for i, f, c, e, d in cases]}


# ---------------------------------------------------------------------------------------------
# State: decision order with sticky pins and budgets. Each case runs on a fresh handle, step by
# step; budgets count calls made through `call`, pins are written by evaluations.
# ---------------------------------------------------------------------------------------------

T0 = "2026-11-21T09:00:00Z"
T_10 = "2026-11-21T10:00:00Z"      # ramp at 10 %
T_100 = "2026-11-22T10:00:00Z"     # ramp at 100 %


def first_unit(salt: str, predicate, prefix: str = "user-") -> str:
    for i in range(10_000):
        unit = f"{prefix}{i}"
        if predicate(bucket(salt, unit)):
            return unit
    raise AssertionError("no unit found")


def state_file():
    chat_rule = {"id": "canary", "ramp": {"variant": "candidate", "baseline": "stable", "start": T0,
                                          "steps": [{"percent": 10, "hold": "24h"}, {"percent": 100}]}}
    document = {
        "revision": "vectors-state-1",
        "flags": {
            "chat": {
                "variants": {"stable": {"model": "m-stable"}, "candidate": {"model": "m-candidate"},
                             "human": {"ai": False}},
                "default": "stable",
                "kill": {"active": False, "serve": "human"},
                "rules": [chat_rule],
                "sticky": {"by": "conversation_id", "ttl": "24h"},
            },
            "metered": {
                "variants": {"premium": {"model": "m-big"}, "cheap": {"model": "m-small"}},
                "default": "premium",
                "budgets": [{"id": "per-user", "per": "user_id", "max_requests": 2, "window": "1h",
                             "action": {"serve": "cheap"}}],
            },
            "sticky-metered": {
                "variants": {"premium": {"model": "m-big"}, "cheap": {"model": "m-small"}},
                "default": "premium",
                "sticky": {"by": "conversation_id", "ttl": "1h"},
                "budgets": [{"id": "per-user", "per": "user_id", "max_requests": 1, "window": "1h",
                             "action": {"serve": "cheap"}}],
            },
            "capped": {
                "variants": {"ai": {"model": "m"}, "static": {"ai": False, "message": "later"}},
                "default": "ai",
                "kill": {"active": False, "serve": "static"},
                "sticky": {"by": "conversation_id", "ttl": "1h"},
                "budgets": [{"id": "feature-hourly", "max_requests": 1, "window": "1h", "action": "kill"}],
            },
        },
    }
    out_unit = first_unit("chat", lambda b: b >= 10_000)
    in_unit = first_unit("chat", lambda b: b < 10_000)
    b_out = bucket("chat", out_unit)
    b_in = bucket("chat", in_unit)

    def ev(flag, context, expected, at=T_10, default=None):
        step = {"op": "evaluate", "flag": flag, "context": context, "at": at, "expected": expected}
        if default is not None:
            step["default"] = default
        return step

    def call(flag, context, variant, reason):
        return {"op": "call", "flag": flag, "context": context, "expected": {"variant": variant, "reason": reason}}

    cases = [
        ("sticky-pin-holds-while-the-ramp-moves",
         "a conversation keeps the variant of its first decision after the ramp grows past its unit",
         [ev("chat", {"user_id": out_unit, "conversation_id": "c1"}, result("stable", "SPLIT", "canary", b_out)),
          ev("chat", {"user_id": out_unit, "conversation_id": "c1"}, result("stable", "STICKY"), at=T_100),
          ev("chat", {"user_id": out_unit, "conversation_id": "c2"}, result("candidate", "SPLIT", "canary", b_out), at=T_100),
          ev("chat", {"user_id": out_unit}, result("candidate", "SPLIT", "canary", b_out), at=T_100)]),
        ("sticky-pin-of-a-ramped-unit",
         "a unit inside the ramp pins the candidate; the pin then serves STICKY",
         [ev("chat", {"user_id": in_unit, "conversation_id": "c3"}, result("candidate", "SPLIT", "canary", b_in)),
          ev("chat", {"user_id": in_unit, "conversation_id": "c3"}, result("candidate", "STICKY"))]),
        ("sticky-integer-conversation",
         "an integer conversation id pins like its decimal text",
         [ev("chat", {"user_id": out_unit, "conversation_id": 42}, result("stable", "SPLIT", "canary", b_out)),
          ev("chat", {"user_id": out_unit, "conversation_id": "42"}, result("stable", "STICKY"), at=T_100)]),
        ("budget-downgrades-a-unit-over-its-requests",
         "the third request of a user in the hour is served the budget's cheaper variant; other users are not",
         [call("metered", {"user_id": "alice"}, "premium", "DEFAULT"),
          call("metered", {"user_id": "alice"}, "premium", "DEFAULT"),
          ev("metered", {"user_id": "alice"}, result("cheap", "BUDGET")),
          call("metered", {"user_id": "alice"}, "cheap", "BUDGET"),
          ev("metered", {"user_id": "bob"}, result("premium", "DEFAULT")),
          ev("metered", {}, result("premium", "DEFAULT"))]),
        ("sticky-before-budget",
         "a pinned conversation keeps its variant when its user's budget is exhausted (step 3 before 4); a new conversation is downgraded",
         [call("sticky-metered", {"user_id": "carol", "conversation_id": "k1"}, "premium", "DEFAULT"),
          ev("sticky-metered", {"user_id": "carol", "conversation_id": "k1"}, result("premium", "STICKY")),
          ev("sticky-metered", {"user_id": "carol", "conversation_id": "k2"}, result("cheap", "BUDGET")),
          ev("sticky-metered", {"user_id": "carol", "conversation_id": "k2"}, result("cheap", "BUDGET"))]),
        ("budget-kill-beats-sticky",
         "an exhausted budget whose action is kill serves the kill variant, pinned or not",
         [call("capped", {"user_id": "dan", "conversation_id": "z1"}, "ai", "DEFAULT"),
          ev("capped", {"user_id": "dan", "conversation_id": "z1"}, result("static", "KILLED")),
          ev("capped", {"user_id": "erin"}, result("static", "KILLED"))]),
    ]
    return {"description": "Decision order with state: sticky pins (STICKY) and budgets (BUDGET, KILLED by a budget). "
                           "Each case runs its steps in order on a fresh handle.",
            "hash_version": 1, "document": document,
            "cases": [{"id": f"state-{i}", "description": d, "steps": steps} for i, d, steps in cases]}


# ---------------------------------------------------------------------------------------------
# Cache keys: flagrail:v1:<flag>:<variant>:<payload hash>[:<parts hash>], computed here with
# hashlib from the rules in docs/flag-document.md.
# ---------------------------------------------------------------------------------------------

def canonical(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    keys = sorted(value, key=lambda k: k.encode("utf-8"))
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(value[k]) for k in keys) + "}"


def sha16(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()[:16]


def cache_key(flag_key: str, variant: str, payload, parts) -> str:
    esc = lambda s: s.replace("%", "%25").replace(":", "%3A")
    key = f"flagrail:v1:{esc(flag_key)}:{esc(variant)}:{sha16(canonical(payload).encode('utf-8'))}"
    if parts:
        data = b""
        for part in parts:
            raw = str(part).encode("utf-8")
            data += len(raw).to_bytes(8, "little") + raw
        key += ":" + sha16(data)
    return key


def cache_keys_file():
    payloads = {
        "support-bot": {
            "stable": {"model": "claude-sonnet-4", "prompt": "support/v2.1", "temperature": 0.2,
                       "max_tokens": 1500, "tools": ["search"], "cache_ttl_seconds": 3600},
            "v2.2": {"prompt": "support/v2.2", "model": "claude-opus-4", "temperature": 0.2,
                     "max_tokens": 1500, "tools": ["search", "rewrite"]},
            "empty": {},
            "unicode": {"message": "Bonjour \u00e0 vous \u2014 \"quoted\"\n", "z": [1, 2.5, None, True], "a": {"b": 1.0}},
        },
        "ns:odd%key": {"v:1": {"n": 7}},
    }
    cases = []
    specs = [
        ("support-bot", "stable", [], "no parts: flag, variant and payload hash"),
        ("support-bot", "stable", ["What is my refund status?"], "one text part"),
        ("support-bot", "v2.2", ["What is my refund status?"], "the same question under another variant has another key"),
        ("support-bot", "stable", ["ab", "c"], "parts are length-prefixed: (ab, c)"),
        ("support-bot", "stable", ["a", "bc"], "... differs from (a, bc)"),
        ("support-bot", "stable", [42, "user-7"], "an integer part is its decimal text"),
        ("support-bot", "stable", ["42", "user-7"], "... so it equals the text part \"42\""),
        ("support-bot", "empty", ["x"], "an empty payload"),
        ("support-bot", "unicode", ["\u00e9t\u00e9", ""], "non-ASCII payload and parts, an empty part, 1.0 written as 1"),
        ("ns:odd%key", "v:1", ["q"], "':' and '%' in ids are escaped"),
    ]
    for i, (flag_key, variant, parts, description) in enumerate(specs):
        cases.append({"id": f"cache-key-{i + 1}", "description": description, "flag": flag_key, "variant": variant,
                      "parts": parts, "payload_hash": sha16(canonical(payloads[flag_key][variant]).encode("utf-8")),
                      "key": cache_key(flag_key, variant, payloads[flag_key][variant], parts)})
    document = {"revision": "vectors-cache-keys-1",
                "flags": {k: {"variants": v, "default": next(iter(v)),
                              "rules": [{"id": f"pick-{vid}", "when": {"attr": "pick", "op": "eq", "value": vid},
                                         "serve": vid} for vid in v]}
                          for k, v in payloads.items()}}
    return {"description": "variant.cache_key(*parts): evaluate `flag` with context {\"pick\": variant} (a rule serves "
                           "that variant), then its cache key of `parts` equals `key`; its payload hash is `payload_hash`.",
            "hash_version": 1, "document": document, "cases": cases}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the files are out of date")
    args = parser.parse_args()
    outputs = {
        "eval-targeting.json": targeting_file(),
        "eval-ramp.json": ramp_file(),
        "eval-kill.json": kill_file(),
        "errors.json": errors_file(),
        "eval-hostile.json": hostile_file(),
        "eval-state.json": state_file(),
        "cache-keys.json": cache_keys_file(),
    }
    stale = []
    for name, content in outputs.items():
        ids = [c["id"] for c in content["cases"]]
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
        text = json.dumps(content, indent=2, ensure_ascii=True) + "\n"
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}: {len(ids)} cases")
    if stale:
        print("out of date:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
