from __future__ import annotations

import pytest

from fastgw.core import normalize_path


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
        (b"/a%2fb", "/a%2Fb"),
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
