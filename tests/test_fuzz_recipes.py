"""Fuzz: mutated recipes through `incentive validate` give exit code 0 or 2, never a traceback.

Every recipe in `recipes/` is mutated structurally (keys dropped, duplicated or renamed; values swapped
for other types, huge or negative numbers, odd strings, deep nesting) and as bytes (non-UTF-8 bytes,
cut files, YAML tags, duplicated lines), then validated in-process. A few hundred cases run in the
default pass (derandomized, so the pass is reproducible); `-m slow` runs a thousand.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incentive.cli import main

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    9223372036854775808,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    1e-320,
    0.5,
    "",
    "x" * 5000,
    "../../escape",
    "..",
    "a/b",
    "2024-05-01",
    "1e6",
    "\u00e9\u4e2d\U0001f600",
    "\x00",
    "os:system",
    [],
    {},
    [[[[]]]],
    {"a": {"b": {"c": None}}},
    [1, "two", None, 3.0],
    [2147483648],
]
TEXT_MUTATIONS = ["bytes", "cut", "tag", "duplicate_line", "deep", "tab"]


def paths(data, prefix=()):
    """Every (path, value) in a nested structure, mappings and lists alike."""
    yield prefix, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths(value, (*prefix, index))


def parent_of(data, path):
    node = data
    for part in path[:-1]:
        node = node[part]
    return node


def mutate_structure(data, draw) -> None:
    """One structural change, in place."""
    candidates = [p for p, _ in paths(data) if p]
    if not candidates:
        return
    path = draw(st.sampled_from(candidates))
    parent, last = parent_of(data, path), path[-1]
    kind = draw(st.sampled_from(["drop", "swap", "nest", "rename", "huge", "negate", "list"]))
    if kind == "drop":
        del parent[last]
    elif kind == "swap":
        parent[last] = draw(st.sampled_from(ODD_VALUES))
    elif kind == "nest":
        value = parent[last]
        for _ in range(draw(st.integers(1, 80))):
            value = draw(st.sampled_from([[value], {"x": value}]))
        parent[last] = value
    elif kind == "rename" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["seeed", "name ", "", "1", "env.id"]))] = parent.pop(last)
    elif kind == "huge":
        parent[last] = draw(st.sampled_from([10**19, 2**64, 1e30, 1e300, float(2**53 + 1)]))
    elif kind == "negate" and isinstance(parent[last], int | float) and not isinstance(parent[last], bool):
        parent[last] = -parent[last] - 1
    elif kind == "list":
        parent[last] = [parent[last]] * draw(st.integers(0, 3))


def mutate_text(raw: bytes, draw) -> bytes:
    """One change to the file's bytes."""
    kind = draw(st.sampled_from(TEXT_MUTATIONS))
    at = draw(st.integers(0, len(raw)))
    if kind == "bytes":
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if kind == "cut":
        return raw[:at]
    if kind == "tag":
        tag = draw(
            st.sampled_from([b"!!binary ", b"!!set ", b"!!python/object:os.system ", b"!x ", b"&a ", b"*a "])
        )
        return raw.replace(b": ", b": " + tag, 1)
    if kind == "duplicate_line":
        lines = raw.splitlines(keepends=True)
        if not lines:
            return raw
        index = draw(st.integers(0, len(lines) - 1))
        return b"".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
    if kind == "deep":
        depth = draw(st.sampled_from([30, 200, 3000]))
        return raw + b"\nextra: " + b"[" * depth + b"]" * depth + b"\n"
    return raw.replace(b"  ", b"\t", 1)


def validate(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, err.getvalue()


def check(data, tmp_path: Path) -> None:
    source = data.draw(st.sampled_from(RECIPES))
    raw = source.read_bytes()
    if data.draw(st.booleans()):
        recipe = yaml.safe_load(raw)
        for _ in range(data.draw(st.integers(1, 3))):
            mutate_structure(recipe, data.draw)
        try:
            raw = yaml.safe_dump(recipe, allow_unicode=True).encode()
        except (yaml.YAMLError, RecursionError):
            return
    if data.draw(st.booleans()):
        raw = mutate_text(raw, data.draw)
    path = tmp_path / "mutated.yaml"
    path.write_bytes(raw)
    code, err = validate(path)
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error:")


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_recipes_validate_or_fail_cleanly(data, tmp_path: Path):
    check(data, tmp_path)


@pytest.mark.slow
@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_thousand_mutated_recipes(data, tmp_path: Path):
    check(data, tmp_path)
