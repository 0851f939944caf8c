"""The compiled HTTP helpers and their pure-Python twins give the same answers.

Random messages, cut into random pieces, go through real httptools parsers into each implementation's sink;
everything the sinks record (or the error they raise) must be identical, and so must the heads built from it.
"""

from __future__ import annotations

import types

import pytest
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import router as pyrouter

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

IMPLS = (_core, pyhttp)

REQUEST_FIELDS = [
    "method_b", "method", "url", "headers", "header_bytes", "content_length", "chunked", "expect_continue",
    "host_raw", "host", "conn_tokens", "keep_alive", "http10", "head_only", "headers_done", "complete", "error",
    "body", "buffered", "body_size", "path", "query",
]  # fmt: skip


def _cased(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.upper(), name.title(), name.lower()])


HEADER_NAME = st.one_of(
    st.sampled_from(["host", "content-length", "transfer-encoding", "connection", "expect"]).flatmap(_cased),
    st.sampled_from(["via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "keep-alive", "te"]),
    st.sampled_from(["X-Real-IP", "x-real-ip", "Forwarded", "forwarded", "X-Real-Ip-Not"]),
    st.sampled_from(["Accept", "User-Agent", "X-Custom", "upgrade", "Proxy-Authorization", "trailer"]),
)
HEADER_VALUE = st.sampled_from(
    [
        "a",
        "api.example.com",
        "API.Example.COM:8080",
        "[::1]:80",
        "[::1",
        "ÄPI.example:8",
        "h:",
        "bad host",
        "u@h",
        "5",
        "0",
        "12x",
        "chunked",
        "Chunked",
        "gzip, chunked",
        "keep-alive",
        "close",
        "X-Custom, keep-alive",
        "Upgrade",
        "100-continue",
        "200-ok",
        "10.0.0.1",
        "1.1 other",
        "for=192.0.2.60;proto=http",
        "x" * 30,
        "",
    ]
)
REQUEST_HEADERS = st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8)
METHOD = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
TARGET = st.sampled_from(["/", "/a/b?x=1", "/%2e%2e/x", "http://h.example/p?q", "/" + "x" * 40])
VERSION = st.sampled_from(["1.1", "1.1", "1.0"])
BODY = st.sampled_from([None, b"", b"hello", b"x" * 100])


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        headers = draw(REQUEST_HEADERS)
        body = draw(BODY)
        version = draw(VERSION)
        wellformed = draw(st.integers(0, 3)) > 0  # mostly well-formed messages, so acceptance is common
        if wellformed:
            special = ("content-length", "transfer-encoding", "host", "expect", "connection")
            headers = [(n, v) for n, v in headers if n.lower() not in special]
            hosts = ["api.example.com", "API.example.com:8080", "[::1]", "[::1]:80", "ÄPI.ex", "ab", "AB:"]
            headers.append(("Host", draw(st.sampled_from(hosts))))
            if draw(st.booleans()):
                headers.append(("Connection", draw(st.sampled_from(["keep-alive", "close", "X-Custom, Via"]))))
        lines = [f"{draw(METHOD)} {draw(TARGET)} HTTP/{version}"]
        lines += [f"{n}: {v}" for n, v in headers]
        head = ("\r\n".join(lines) + "\r\n").encode()
        if body is None:
            out.append(head + b"\r\n")
        elif draw(st.booleans()) or (wellformed and version == "1.0"):
            out.append(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        else:
            chunks = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            out.append(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    return b"".join(out)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def _outcome(exc: BaseException) -> tuple:
    cause = exc.__context__
    if isinstance(cause, pyhttp.Reject):
        return ("reject", cause.status, cause.message)
    if isinstance(exc, HttpParserUpgrade):
        return ("upgrade",)
    return (type(exc).__name__, type(cause).__name__ if cause is not None else None)


def _request_state(req: object) -> dict:
    state = {f: getattr(req, f) for f in REQUEST_FIELDS}
    state["replayable"] = req.replayable()  # type: ignore[attr-defined]
    return state


def _run_requests(impl: types.ModuleType, pieces: list[bytes], limits: tuple[int, ...]) -> tuple:
    calls: list[str] = []
    owner = types.SimpleNamespace(buffer_full=lambda: calls.append("buffer_full"))
    queue: list = []
    sink = impl.RequestSink(owner, queue, *limits[:4], 64, max_field_size=limits[4])
    sink.parser = HttpRequestParser(sink)
    outcome = None
    for piece in pieces:
        try:
            sink.parser.feed_data(piece)
        except (HttpParserError, HttpParserUpgrade) as exc:
            outcome = _outcome(exc)
            break
    return outcome, calls, [_request_state(r) for r in queue], queue


# Mostly roomy limits, sometimes tight ones, so that both acceptance and each refusal are common.
LIMITS = st.tuples(
    st.sampled_from([16, 8192, 8192, 8192]),  # max_url_length
    st.sampled_from([120, 8192, 8192, 8192]),  # max_header_size
    st.sampled_from([3, 100, 100, 100]),  # max_headers
    st.sampled_from([0, 0, 10, 1000]),  # max_body_size (0: unlimited)
    st.sampled_from([8, 20, 8192, 8192]),  # max_field_size (one header field's name + value)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=raw_requests(),
    cuts=st.lists(st.integers(0, 10_000), max_size=4),
    limits=LIMITS,
    head_args=st.tuples(st.booleans(), st.booleans(), st.sampled_from([b"127.0.0.1", b"::1"])),
)
def test_request_sink_twins_agree(data, cuts, limits, head_args):
    pieces = _pieces(data, cuts)
    fast = _run_requests(_core, pieces, limits)
    slow = _run_requests(pyhttp, pieces, limits)
    assert fast[:3] == slow[:3]
    trusted, via, peer = head_args
    for f, s in zip(fast[3], slow[3], strict=True):
        if f.headers_done:
            args = (b"/up?x", b"backend:8080", trusted, peer, via)
            assert f.upstream_head(*args) == s.upstream_head(*args)


RESPONSE_HEADER = st.tuples(
    st.one_of(
        st.sampled_from(["Date", "Server", "Via", "Connection", "Keep-Alive", "Content-Type", "X-Up"]),
        st.sampled_from(["date", "server", "x-up", "set-cookie", "trailer", "upgrade", "proxy-authenticate"]),
        st.sampled_from(["TE", "Proxy-Connection", "PROXY-AUTHORIZATION", "Te-Extra", "Dates", "viA"]),
    ),
    st.sampled_from(["v", "keep-alive", "close", "X-Up", "x-up, keep-alive", "date", "1.1 up", "Server"]),
)


@st.composite
def raw_responses(draw: st.DrawFn) -> tuple[bytes, int]:
    status = draw(st.sampled_from([200, 200, 201, 204, 304, 404, 502, 101, 299, 599]))
    headers = draw(st.lists(RESPONSE_HEADER, max_size=6))
    body = draw(st.sampled_from([b"", b"ok", b"y" * 70]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    lines = []
    if draw(st.booleans()):
        lines.append("HTTP/1.1 100 Continue\r\nX-Info: 1\r\n\r\n")
    lines.append(f"HTTP/1.1 {status} Whatever\r\n")
    lines += [f"{n}: {v}\r\n" for n, v in headers]
    head = "".join(lines).encode()
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, status
    if framing == "chunked":
        chunks = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n", status
    return head + b"\r\n" + body, status


def _run_response(impl: types.ModuleType, pieces: list[bytes], flags: tuple[bool, ...]) -> tuple:
    head_only, http10, keep_alive, via, closing, ended = flags
    req = impl.Request()
    req.head_only, req.http10, req.keep_alive = head_only, http10, keep_alive
    ex = impl.ExchangeState(req, None, None, None, None)
    sink = impl.ResponseSink()
    sink.parser = HttpResponseParser(sink)
    state = types.SimpleNamespace(closing=closing)
    sink.begin(ex, b"server: fastgw\r\n", via, b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\n", state)
    outcome = None
    out = []
    for piece in pieces:
        try:
            sink.parser.feed_data(piece)
        except HttpParserError as exc:
            outcome = _outcome(exc)
            break
        out += sink.out
        sink.out.clear()
        if sink.done:
            break
    if ended and outcome is None and not sink.done and sink.until_close:
        sink.connection_ended()
        out += sink.out
    flags_after = (sink.done, sink.keep, sink.until_close, sink.new_parser, sink.chunk_out)
    return outcome, b"".join(out), flags_after, (ex.status, ex.response_started, req.keep_alive)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    response=raw_responses(),
    cuts=st.lists(st.integers(0, 10_000), max_size=4),
    flags=st.tuples(*[st.booleans()] * 6),
)
def test_response_sink_twins_agree(response, cuts, flags):
    data, _ = response
    pieces = _pieces(data, cuts)
    assert _run_response(_core, pieces, flags) == _run_response(pyhttp, pieces, flags)


PATH_PIECE = st.sampled_from(
    ["/", "a", ".", "..", "%2e", "%2E", "%2F", "%2f", "%41", "%", "%4", "%zz", "%00", "//", "é"]
    + ["\\", "%5C", "%5c", ";", ";x", "%3B", "%25", "%252e", "%252F", "%255c", "%32", "%65", "-", "~"]
)
# Every policy: escaped slashes reject / keep / decode, with and without backslash-as-separator.
PATH_POLICY = st.sampled_from([0, 1, 2, 4, 5, 6])


@settings(max_examples=1500, deadline=None)
@given(st.lists(PATH_PIECE, max_size=12), PATH_POLICY)
def test_normalize_path_twins_agree(pieces, policy):
    raw = ("/" + "".join(pieces)).encode("utf-8")
    assert _core.normalize_path(raw, policy) == pyhttp.normalize_path(raw, policy)
    if policy == 0:
        assert _core.normalize_path(raw) == pyhttp.normalize_path(raw)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.sampled_from(sorted(pyhttp.RESPONSE_SKIP)),
        st.binary(min_size=1, max_size=20),
        st.sampled_from([b"tf", b"vib", b"datE", b"Serve", b"trailers", b"connections", b"content-lengtx"]),
    ),
    st.randoms(use_true_random=False),
)
def test_response_header_classification_matches_the_skip_set(name, rnd):
    # The compiled sink classifies names by length and a case-folding compare instead of a set lookup.
    mixed = bytes(c ^ 0x20 if 97 <= c <= 122 and rnd.random() < 0.5 else c for c in name)
    assert _core._response_header_is_skipped(mixed) == (mixed.lower() in pyhttp.RESPONSE_SKIP)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.sampled_from(sorted(pyhttp.REQUEST_SKIP | pyhttp._REQUEST_SPECIAL)),
        st.binary(min_size=1, max_size=20),
        st.sampled_from([b"tf", b"vib", b"hosts", b"expecT", b"Host", b"x-forwarded-fox", b"proxy-connectiom"]),
    )
)
def test_request_header_classification_matches_the_sets(name):
    # The compiled request side classifies (lower-cased) names by length and a byte compare instead of a set lookup.
    assert _core._request_header_kind(name) == (name in pyhttp.REQUEST_SKIP, name in pyhttp._REQUEST_SPECIAL)


def _parsed_at_headers_complete(raw: bytes) -> tuple:
    """httptools' own word on a request head: its version and keep-alive, read when the head is complete."""
    seen: list = []

    class Probe:
        def on_headers_complete(self) -> None:
            seen.append((parser.get_http_version(), parser.should_keep_alive()))

    parser = HttpRequestParser(Probe())
    parser.feed_data(raw)
    return seen[0]


@pytest.mark.parametrize("impl", IMPLS, ids=["compiled", "pure"])
@pytest.mark.parametrize("version", ["0.9", "1.0", "1.1", "2.0"])
@pytest.mark.parametrize(
    "extra",
    [
        b"",
        b"Connection: keep-alive\r\n",
        b"Connection: close\r\n",
        b"Connection: x-custom, keep-alive\r\n",
        b"Proxy-Connection: keep-alive\r\n",
        b"Proxy-Connection: close\r\n",
        b"Keep-Alive: timeout=5\r\n",
    ],
)
def test_the_version_and_keep_alive_are_httptools_own(impl, version, extra):
    # The sinks skip get_http_version for a keep-alive request without Connection or Proxy-Connection (it can only
    # be HTTP/1.1 then): whatever the headers, they record what httptools says, and refuse what is not 1.0 or 1.1.
    raw = b"GET / HTTP/%b\r\nHost: a\r\n%b\r\n" % (version.encode(), extra)
    expected_version, expected_keep = _parsed_at_headers_complete(raw)
    outcome, _, states, _ = _run_requests(impl, [raw], (8192, 8192, 100, 0, 8192))
    if expected_version not in ("1.0", "1.1"):
        assert outcome == ("reject", 505, "HTTP Version Not Supported")
        return
    assert outcome is None
    assert states[0]["http10"] == (expected_version == "1.0")
    assert states[0]["keep_alive"] == expected_keep


@settings(max_examples=300, deadline=None)
@given(
    length=st.one_of(st.none(), st.integers(0, 10**9).map(lambda n: b"%d" % n)),
    flags=st.tuples(*[st.booleans()] * 8),
    lines=st.lists(st.sampled_from([b"x-a: 1\r\n", b"content-type: text/plain\r\n"]), max_size=3),
)
def test_head_endings_and_the_keep_alive_rule_twins_agree(length, flags, lines):
    # Every response head ends in finish_head, and keep_alive is the one rule for the connection: both twins.
    # (The lines the gateway adds to one exchange's response, `reply_lines`, are written there too.)
    chunked, keep_in, http10, complete, closing, whole, no_req, reply = flags

    def run(impl: types.ModuleType) -> tuple:
        req = impl.Request()
        req.keep_alive, req.http10, req.complete = keep_in, http10, complete
        ex = impl.ExchangeState(req, None, None, None, None)
        if reply:
            ex.reply_lines = b"ratelimit-limit: 5\r\n"
        keep = impl.keep_alive(req, closing, whole)
        head = impl.finish_head([b"HTTP/1.1 200 OK\r\n", *lines], None if no_req else ex, length, chunked, keep)
        return keep, head, req.keep_alive

    assert run(_core) == run(pyhttp)


URL_PIECE = st.sampled_from(["/", "a", "..", ".", "%2F", "%2e", "?", "#", "x=1", "&", "%", "\\", ";", "//", "users"])


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(URL_PIECE, max_size=10),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    policy=st.sampled_from([0, pyhttp.PATH_SLASHES_KEEP, pyhttp.PATH_SLASHES_DECODE, pyhttp.PATH_BACKSLASH_SEPARATOR]),
)
def test_routing_a_request_target_twins_agree(pieces, method, policy):
    # Router.route: the target's query split off, the fragment dropped, the path policy, the match, in one call.
    url = ("/" + "".join(pieces)).encode()

    def run(impl: types.ModuleType, http: types.ModuleType) -> tuple:
        router = impl.Router()
        router.add("users", ["GET"], "/users/{id}")
        router.add("any", ["ANY"], "/a/{proxy+}")
        router.add("root", ["POST"], "/")
        router.freeze()
        req = http.Request()
        req.url, req.method, req.host = url, method, "h"
        return router.route(req, policy), req.path, req.query

    assert run(_core, _core) == run(pyrouter, pyhttp)
