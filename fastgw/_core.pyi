from collections.abc import Iterable

# The HTTP helpers have exactly the API of their pure twins (the property tests hold them to it).
from fastgw._pycore import Reject as Reject
from fastgw._pycore import Request as Request
from fastgw._pycore import RequestSink as RequestSink
from fastgw._pycore import ResponseSink as ResponseSink
from fastgw._pycore import UpstreamProtocolError as UpstreamProtocolError
from fastgw._pycore import normalize_path as normalize_path

# So has the plugin runtime, twin of fastgw._pyplugins.
from fastgw._pyplugins import ClientRequest as ClientRequest
from fastgw._pyplugins import Context as Context
from fastgw._pyplugins import Headers as Headers
from fastgw._pyplugins import HeadHeaders as HeadHeaders
from fastgw._pyplugins import PhaseChain as PhaseChain
from fastgw._pyplugins import PluginFailed as PluginFailed
from fastgw._pyplugins import ResponseHead as ResponseHead
from fastgw._pyplugins import UpstreamRequest as UpstreamRequest
from fastgw._pyplugins import add_consumer_headers as add_consumer_headers
from fastgw._pyplugins import filter_head as filter_head
from fastgw._pyplugins import finish_phases as finish_phases
from fastgw._pyplugins import new_context as new_context
from fastgw._pyplugins import run_phases as run_phases
from fastgw._pyplugins import strip_headers as strip_headers

ANY: str

class RouteConflict(ValueError): ...

def parse_template(path: str) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...]]: ...

class Router:
    frozen: bool
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def add(
        self, route: object, methods: Iterable[str], path: str, host: str | None = ..., name: str | None = ...
    ) -> None: ...
    def freeze(self) -> None: ...
    def match(
        self, method: str, host: str, path: str
    ) -> tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None: ...
    def dump(self) -> str: ...

class BucketTable:
    capacity: int
    refill_tokens: int
    refill_period_ns: int
    max_keys: int
    def __init__(self, capacity: int, refill_tokens: int, refill_period_ns: int, max_keys: int = ...) -> None: ...
    def __len__(self) -> int: ...
    def take(self, key: str, now_ns: int, cost: int = ...) -> tuple[bool, int, int]: ...
    def sweep(self, now_ns: int) -> int: ...
    def clear(self) -> None: ...
