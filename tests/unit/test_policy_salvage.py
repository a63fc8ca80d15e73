"""Whatever is wrong with a policy file, checking it ends in ``PolicyError`` (never another
exception from the part that checks what the schema refused around) and names each issue
once."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from allowance import PolicyError, parse_policy

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "studio.yaml").read_text("utf-8")
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "Bad Name", "unlimited", "no_access", "1h", "month", "user"]),
    st.lists(st.integers(-1, 1), max_size=2),
    st.dictionaries(st.sampled_from(["max", "type", "zzz"]), st.integers(-1, 1), max_size=2),
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += paths(value, (*prefix, i))
    return out


PATHS = paths(EXAMPLE)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), JUNK), min_size=1, max_size=6))
def test_any_mangled_policy_is_a_policy_error(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    for path, junk in changes:
        node = data
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            with contextlib.suppress(IndexError, TypeError):  # a scalar replaced earlier
                node[path[-1]] = junk
    try:
        parse_policy(yaml.safe_dump(data), "mangled")
    except PolicyError as exc:
        seen = [(i.path, i.message) for i in exc.issues]
        assert len(seen) == len(set(seen)), seen
        assert seen


def test_a_file_the_schema_refuses_at_its_root_still_says_why() -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy("plans: free\nfeatures: {a: {}}\n", "root")
    assert [i.path for i in refused.value.issues] == ["plans"]
