"""A misspelled key, value or plugin name is answered with what it was probably meant to be, at its key path."""

from __future__ import annotations

import pytest

from fastgw.config.load import ConfigError, load_config_bytes

MOCK = b"integration: {type: mock}"


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        (b"upstream: {}\nroutes: []", "$", "unknown field `upstream` (did you mean 'upstreams'?)"),
        (b"routes: [{path: /a, intergration: {type: mock}}]", "$.routes[0]", "did you mean 'integration'?"),
        (
            b"routes: [{path: /a, integration: {type: http, upstream: u, strip_prefx: true}}]",
            "$.routes[0].integration",
            "did you mean 'strip_prefix'?",
        ),
        (
            b"upstreams: {u: {targets: ['http://127.0.0.1:1'], helth: {}}}\nroutes: []",
            "$.upstreams.u",
            "did you mean 'health'?",
        ),
        (
            b"routes: [{path: /a, methods: [get], " + MOCK + b"}]",
            "$.routes[0].methods[0]",
            "got 'get' (did you mean 'GET'?)",
        ),
        (
            b"routes: [{path: /a, plugins: {rate-limit: {perod: 1}}, " + MOCK + b"}]",
            "$.routes[0].plugins.rate-limit",
            "unknown field `perod` (did you mean 'period'?)",
        ),  # fmt: skip
        # Kong's and APISIX's names point to fastgw's.
        (b"plugins: {rate-limiting: {}}\nroutes: []", "$.plugins.rate-limiting", "did you mean 'rate-limit'?"),
        (b"plugins: {correlation-id: {}}\nroutes: []", "$.plugins.correlation-id", "did you mean 'request-id'?"),
        (b"plugins: {limit-count: {}}\nroutes: []", "$.plugins.limit-count", "did you mean 'rate-limit'?"),
        (b"plugins: {key-aut: {}}\nroutes: []", "$.plugins.key-aut", "did you mean 'key-auth'?"),
    ],
)
def test_misspellings_get_a_suggestion(raw, path, words):
    with pytest.raises(ConfigError) as info:
        load_config_bytes(raw, "gw.yaml")
    assert info.value.path == path, str(info.value)
    assert words in str(info.value), str(info.value)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(ConfigError) as info:
        load_config_bytes(b"zzzzqqq: 1\nroutes: []", "gw.yaml")
    assert "did you mean" not in str(info.value)
