"""`HeadSplice` (one local rate limit's fields written into the first final head): the compiled class and its pure
twin give the same bytes for any sequence of writes: interim heads, heads with and without fields of the names to
replace (in any case), bodies in the same write or later, a head whose blank line never came, short writes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import _pyplugins, core

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

NAMES = (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset", b"ratelimit-policy")
FIELDS = st.sampled_from(
    [b"Server: x", b"content-length: 2", b"RateLimit-Limit: 9", b"ratelimit-reset:1", b"RATELIMIT-POLICY: p",
     b"x-ratelimit-limit: 3", b"ratelimit-limits: 4", b"ratelimit-limit", b"Date: today", b"a: ratelimit-limit: 5"]
)  # fmt: skip
STATUS = st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints",
                          b"HTTP/1.1 429 Too Many Requests", b"HTTP/1.0 304 Not Modified"])  # fmt: skip
HEAD = st.builds(lambda s, f: b"\r\n".join([s, *f]) + b"\r\n\r\n", STATUS, st.lists(FIELDS, max_size=5))
WRITE = st.one_of(
    HEAD,
    st.builds(lambda h, b: h + b, HEAD, st.binary(max_size=12)),
    st.binary(max_size=16),
    st.builds(lambda s, f: b"\r\n".join([s, *f]) + b"\r\n", STATUS, st.lists(FIELDS, max_size=3)),  # no blank line
)


@settings(max_examples=300, deadline=None)
@given(writes=st.lists(WRITE, min_size=1, max_size=4), lines=st.sampled_from([b"", b"ratelimit-limit: 5\r\n"]))
def test_both_twins_write_the_same_bytes(writes, lines):
    outs: list[list[bytes]] = []
    for impl in (_core, _pyplugins):
        out: list[bytes] = []
        splice = impl.HeadSplice(out.append, lines, NAMES)
        for data in writes:
            splice.write(data)
        outs.append(out)
    assert outs[0] == outs[1]


def test_the_first_final_head_gets_the_lines_in_place_of_fields_of_those_names():
    for impl in (_core, _pyplugins):
        out: list[bytes] = []
        splice = impl.HeadSplice(out.append, b"ratelimit-limit: 5\r\n", NAMES)
        splice.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        splice.write(b"HTTP/1.1 200 OK\r\nRateLimit-Limit: 9\r\nx: 1\r\n\r\nbody")
        splice.write(b"HTTP/1.1 200 OK\r\n\r\n")  # bytes after the head (not a head): as they are
        assert out == [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nx: 1\r\nratelimit-limit: 5\r\n\r\nbody",
                       b"HTTP/1.1 200 OK\r\n\r\n"], impl  # fmt: skip
