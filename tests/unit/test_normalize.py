from __future__ import annotations

import pytest

from fastgw.core import (
    PATH_BACKSLASH_SEPARATOR,
    PATH_SLASHES_DECODE,
    PATH_SLASHES_KEEP,
    PATH_SLASHES_REJECT,
    normalize_path,
)


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"/", "/"),
        (b"/a/b", "/a/b"),
        (b"/a/./b/../c", "/a/c"),
        (b"/a//b///c", "/a/b/c"),
        (b"/a/b/", "/a/b/"),
        (b"/a/b/..", "/a/"),
        (b"/a/b/.", "/a/b/"),
        (b"/%61%62c", "/abc"),
        (b"/a/%2e%2E/b", "/b"),
        (b"/a/.%2e/b", "/b"),
        (b"/a%2cb", "/a%2Cb"),
        (b"/caf%c3%a9", "/caf%C3%A9"),
        (b"/%7euser", "/~user"),
        (b"/sp%20ace", "/sp%20ace"),
        (b"/a/..", "/"),
    ],
)
def test_normalize(raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", [b"/..", b"/a/../..", b"/%2e%2e", b"/a%", b"/a%4", b"/a%zz", b"/a%00b"])
def test_refused(raw):
    assert normalize_path(raw) is None


REJECT, KEEP, DECODE, SEP = PATH_SLASHES_REJECT, PATH_SLASHES_KEEP, PATH_SLASHES_DECODE, PATH_BACKSLASH_SEPARATOR


@pytest.mark.parametrize(
    "raw,policy,expected",
    [
        # Encoded separators: refused by default, kept inside their segment, or decoded and normalized.
        (b"/ids/a%2Fb", REJECT, None),
        (b"/ids/a%5Cb", REJECT, None),
        (b"/ids/a%2fb", KEEP, "/ids/a%2Fb"),
        (b"/ids/a%5cb", KEEP, "/ids/a%5Cb"),
        (b"/ids/a%2Fb", DECODE, "/ids/a/b"),
        (b"/public/..%2Fadmin", DECODE, "/admin"),
        (b"/public/%2E%2E%2Fadmin", DECODE, "/admin"),
        # Kept, but a backend decoding them would find a dot-segment: refused.
        (b"/public/..%2Fadmin", KEEP, None),
        (b"/public/x%2F..%2F..%2Fadmin", KEEP, None),
        (b"/public/x%5C..%5Cadmin", KEEP, None),
        (b"/public/%2e%2e%5Cadmin", KEEP, None),
        (b"/public/x%2F.%2Fy", KEEP, None),
        (b"/public/..;x%2Fadmin", KEEP, None),
        # Decoded %5C is a backslash: it follows the backslash rule.
        (b"/a%5Cb", DECODE, None),
        (b"/a%5Cb", DECODE | SEP, "/a/b"),
        (b"/public/..%5Cadmin", DECODE | SEP, "/admin"),
        # Backslash: refused, or a separator.
        (b"/a\\b", REJECT, None),
        (b"/a\\b", KEEP, None),
        (b"/a\\b", SEP, "/a/b"),
        (b"/public/..\\admin", SEP, "/admin"),
        (b"/public\\..\\admin\\", SEP, "/admin/"),
        # `;` parameters on dot-segments (Tomcat, Spring) and on empty ones: refused under every policy.
        (b"/public/..;/admin", KEEP, None),
        (b"/public/..;jsessionid=1/admin", DECODE | SEP, None),
        (b"/public/.;x/admin", REJECT, None),
        (b"/public/;x/../admin", REJECT, None),
        (b"/public/%2e%2e;/admin", REJECT, None),
        (b"/public/..%3B/admin", REJECT, None),
        (b"/public/..%3b/admin", KEEP, None),
        # ... while parameters on ordinary segments pass as they came.
        (b"/a;v=1/b", REJECT, "/a;v=1/b"),
        (b"/a/b;jsessionid=x", REJECT, "/a/b;jsessionid=x"),
        (b"/a..;/b", REJECT, "/a..;/b"),
        # Double encoding of a dot or a separator: refused under every policy.
        (b"/public/%252e%252e/admin", KEEP, None),
        (b"/public/%252E./admin", DECODE | SEP, None),
        (b"/public/..%252Fadmin", REJECT, None),
        (b"/public/..%252fadmin", KEEP, None),
        (b"/public/..%255cadmin", DECODE | SEP, None),
        (b"/public/%25%32%65%25%32%65/admin", KEEP, None),
        # Other %25 escapes are fine.
        (b"/100%25", REJECT, "/100%25"),
        (b"/a%2541", KEEP, "/a%2541"),
    ],
)
def test_path_policy(raw, policy, expected):
    assert normalize_path(raw, policy) == expected
