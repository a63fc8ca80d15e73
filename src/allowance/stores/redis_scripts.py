"""The Lua scripts of the Redis stores (``lua/*.lua``), named by their SHA1, and
``decide.lua`` with a policy's rules compiled in as data (``rules.encode``)."""

from __future__ import annotations

import hashlib
import weakref
from importlib import resources

from allowance import rules
from allowance.policy import Policy
from allowance.stores.redis_wire import Lua
from allowance.windows import KEEP_AFTER

__all__ = ["compiled_decide", "lua", "lua_spec", "script", "sha1_hex"]


INCLUDES = ("relay", "ledger")  # the scripts of one function each, put in where named


def script(name: str) -> str:
    """A script's text, with relay.lua's function where it says ``--RELAY--`` and ledger.lua's
    where it says ``--LEDGER--`` (Lua has no includes; one copy of how an outbox reaches the
    event log, and of how ledger rows are appended)."""
    text = resources.files("allowance.stores").joinpath(f"lua/{name}.lua").read_text("utf-8")
    for included in INCLUDES:
        mark = f"--{included.upper()}--"
        if mark in text:
            text = text.replace(mark, script(included), 1)
    return text


def sha1_hex(text: str) -> str:
    """The SHA1 Redis names a script by."""
    return hashlib.sha1(text.encode()).hexdigest()


def lua(name: str) -> Lua:
    text = script(name)
    return Lua(text, sha1_hex(text))


_decide_scripts: weakref.WeakKeyDictionary[Policy, Lua] = weakref.WeakKeyDictionary()


def compiled_decide(policy: Policy) -> Lua:
    """decide.lua with the policy's rules compiled in, once per policy object (a cache by
    ``id()`` would hand a dead policy's script to a new one at the same address)."""
    found = _decide_scripts.get(policy)
    if found is None:
        text = script("decide").replace("--SPEC--", lua_spec(policy), 1)
        found = _decide_scripts[policy] = Lua(text, sha1_hex(text))
    return found


def lua_spec(policy: Policy) -> str:
    """The policy's compiled rules (``rules.encode``) as Lua data, for decide.lua. A script's
    top level runs on every call, so the rules are a function that builds only the feature
    asked for (a table of every feature, built each call, cost ~13 us inside Redis)."""
    lines = [
        f"local KEEP_AFTER = {KEEP_AFTER!r}",
        f"local NPLANS = {len(policy.plans)}",
        "local PLANS = {"
        + ", ".join(f"[{_lua(p.name)}] = {i + 1}" for i, p in enumerate(policy.plans))
        + "}",
        "local function rules_of(feature)",
    ]
    for i, feature in enumerate(policy.features):
        encoded = rules.encode(rules.compiled(policy, feature))
        fields = ", ".join(
            f"{name} = {_lua(getattr(encoded, name))}"
            for name in (
                "names",
                "kinds",
                "lengths",
                "costs",
                "records",
                "access",
                "caps",
                "soft",
                "scale",
                "load",
                "most",
                "reach",
                "levels",
                "level_at",
            )
        )
        keyword = "if" if i == 0 else "elseif"
        lines.append(f"  {keyword} feature == {_lua(feature)} then return {{{fields}}}")
    return "\n".join([*lines, "  end", "  return nil", "end"])


def _lua(value: object) -> str:
    """A Lua literal: a string (quoted, escapes kept), a number, or a sequence as a table."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, int | float):
        return repr(value)
    assert isinstance(value, tuple)
    return "{" + ", ".join(_lua(v) for v in value) + "}"
