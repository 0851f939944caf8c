"""The path policy against a backend that reads paths as loosely as any real one does.

Whatever a policy lets through, a backend that decodes twice, treats `\\` as `/`, and strips `;` parameters
before resolving dot-segments (Tomcat, Spring, IIS, all at once) must read as the same segments in the same
order: no segment may climb out of its place. Run on the core this process loaded and on the pure twin.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp

PIECE = st.sampled_from(
    ["/", "a", "admin", ".", "..", "%2e", "%2E", "%2F", "%2f", "%5C", "%5c", "\\", ";", ";x", "%3B", "%3b"]
    + ["%25", "%252e", "%252F", "%255c", "%253B", "%32", "%65", "%66", "%35", "%63", "%33", "%62", "//", "é"]
)
POLICY = st.sampled_from([0, 1, 2, 4, 5, 6])
NORMALIZERS = sorted({core.normalize_path, pyhttp.normalize_path}, key=id)


def _loose_pieces(text: str) -> list[str]:
    """What a loose backend makes of some path text: decoded twice, `\\` as `/`, `;params` dropped."""
    s = unquote(unquote(text, encoding="latin-1"), encoding="latin-1").replace("\\", "/")
    return [p.split(";", 1)[0] for p in s.split("/")]


def _resolve(pieces: list[str]) -> list[str]:
    out: list[str] = []
    for p in pieces:
        if p in ("", "."):
            continue
        if p == "..":
            if out:
                out.pop()
            continue
        out.append(p)
    return out


@pytest.mark.parametrize("normalize", NORMALIZERS)
@settings(max_examples=1500, deadline=None)
@given(pieces=st.lists(PIECE, max_size=12), policy=POLICY)
def test_no_segment_climbs_out_for_a_loose_backend(normalize, pieces, policy):
    raw = ("/" + "".join(pieces)).encode("utf-8")
    path = normalize(raw, policy)
    if path is None:
        return
    for seg in path.split("/")[1:]:
        assert ".." not in _loose_pieces(seg), (raw, policy, path)
    # So the backend's reading of the whole path is its reading of each segment, one after the other.
    assert _resolve(_loose_pieces(path)) == [p for seg in path.split("/") for p in _resolve(_loose_pieces(seg))]
