# The route trie, compiled (part of `fastgw._core`, included by `fastgw/_core.pyx`; declarations: router.pxd).
#
# Its pure twin `fastgw/core/router.py` is the specification: `add` and `freeze` run there, `match` and `route` here
# on a copy of the frozen trie; tests/property/test_twins.py holds the two to the same answers.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_Find, PyUnicode_FindChar
from libc.string cimport memchr

from fastgw.core.router import (
    ANY,
    HOST_ANY,
    HOST_EXACT,
    HOST_WILDCARD,
    RouteConflict,
    parse_template,
)
from fastgw.core.router import Router as _SpecRouter


cdef class _Entry:
    def __cinit__(self, route, str name, frozenset methods, int host_kind, str host, tuple param_names,
                  long long order):
        self.route = route
        self.name = name
        self.methods = methods
        self.any_method = ANY in methods
        self.host_kind = host_kind
        self.host = host
        self.param_names = param_names
        self.order = order


cdef class _Node:
    def __cinit__(self):
        self.literals = {}
        self.constrained = []
        self.fullmatch = None
        self.param = None
        self.entries = []
        self.greedy_entries = []


cdef inline bint _host_ok(_Entry e, str host):
    if e.host_kind == HOST_ANY:
        return True
    if e.host_kind == HOST_EXACT:
        return host == e.host
    return len(host) > len(e.host) and host.endswith(e.host)


cdef _Entry _pick(list entries, str method, str host, set allowed, frozenset skip):
    # `allowed` is None on the first walk (a hit needs no 405 bookkeeping); a miss walks again to collect it.
    # `skip` is None but when a request falls through routes told apart by headers (Router.match_past).
    cdef _Entry e
    for e in entries:
        if not _host_ok(e, host):
            continue
        if skip is not None and e.route in skip:
            continue
        if e.any_method or method in e.methods:
            return e
        if allowed is not None:
            allowed.update(e.methods)
    return None


cdef _Entry _walk(_Node node, str path, Py_ssize_t i, Py_ssize_t n, str method, str host, list params,
                  set allowed, frozenset skip):
    # Each trie edge consumes exactly one segment, so a node is only ever tried at one depth: the walk visits
    # each node at most once and its cost is bounded by the size of the trie, whatever the path.
    # PERF: the segments are read off the path as the walk reaches them (`i`: where the next one may start), not
    # split into a list first: ~610 instructions less a match on /users/{id}-like tables (callgrind, Router.match
    # in a loop over /users/7, /users/7/posts/9, /static/a/b/c.css).
    cdef _Node child
    cdef _Entry found
    cdef str seg
    cdef Py_ssize_t j
    while i < n and path[i] == u"/":  # NOTE: empty segments are skipped, as the pure twin's split drops them
        i += 1
    if i == n:
        if node.entries:
            return _pick(node.entries, method, host, allowed, skip)
        return None
    j = PyUnicode_FindChar(path, 47, i, n, 1)  # /
    if j == -2:
        raise RuntimeError("PyUnicode_FindChar failed")
    if j < 0:
        j = n
    seg = path[i:j]
    child = node.literals.get(seg)
    if child is not None:
        found = _walk(child, path, j, n, method, host, params, allowed, skip)
        if found is not None:
            return found
    if node.constrained:
        for child in node.constrained:  # NOTE: a constraint matches the whole segment, never more than one
            if child.fullmatch(seg) is not None:
                params.append(seg)
                found = _walk(child, path, j, n, method, host, params, allowed, skip)
                if found is not None:
                    return found
                params.pop()
    if node.param is not None:
        params.append(seg)
        found = _walk(node.param, path, j, n, method, host, params, allowed, skip)
        if found is not None:
            return found
        params.pop()
    if node.greedy_entries:
        found = _pick(node.greedy_entries, method, host, allowed, skip)
        if found is not None:
            params.append(_rest(path, i))
            return found
    return None


cdef class Router:
    """Route table: `add` routes, `freeze`, then `match` (method, host, path). See `fastgw.core.router.Router`.

    `add` and `freeze` run once per config load: they are the pure twin's own (parsing templates, refusing
    conflicts, ordering entries), run on a pure `Router` kept inside, and `freeze` copies its frozen trie into C
    structs for `match`, the only part compiled twice."""

    def __cinit__(self):
        self._spec = _SpecRouter()
        self._root = _Node()
        self._static = {}
        self.frozen = False

    def __len__(self):
        return len(self._spec)

    def add(self, route, methods, str path, host=None, name=None, int priority=0):
        self._spec.add(route, methods, path, host, name, priority)

    def freeze(self):
        cdef _Node root
        spec = self._spec
        spec.freeze()
        made = {}  # id(entry of the spec) -> its compiled copy: the static table and the trie share entries
        self._root = _copy_node(spec._root, made)
        self._static = {path: [_copy_entry(e, made) for e in entries] for path, entries in spec._static.items()}
        root = self._root
        self._greedy_root = not root.literals and not root.constrained and root.param is None
        self.frozen = True

    def dump(self):
        return self._spec.dump()

    def match(self, str method, str host, str path):
        return self._match(method, host, path, None)

    def match_past(self, str method, str host, str path, frozenset skip):
        """See `fastgw.core.router.Router.match_past`: the match as if the routes in `skip` were not there."""
        return self._match(method, host, path, skip)

    def route(self, Request req, int policy=0):
        """See `fastgw.core.router.Router.route`: the request target's split, path policy and match in one call."""
        cdef bytes url = req.url, raw
        # PERF: memchr where bytes.find cost ~800 instructions a call (its arguments parsed as a method's; callgrind).
        cdef const char* p = PyBytes_AS_STRING(url)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(url), q, h
        cdef const void* at = memchr(p, 63, n)  # ?
        q = <const char*>at - p if at != NULL else -1
        # PERF: the slices made by PyBytes_FromStringAndSize, where `url[:q]` went through PySequence_GetSlice at
        # ~650 instructions each (a slice object made and parsed; callgrind): ~1,200 less a request with a query
        # string (bench/instructions.py --scenario chain saved 3.05k where proxy, without one, saved 1.85k).
        if q >= 0:
            req.query = PyBytes_FromStringAndSize(p + q + 1, n - q - 1)
            n = q
        at = memchr(p, 35, n)  # #
        h = <const char*>at - p if at != NULL else -1
        if h >= 0:
            n = h
        raw = url if n == PyBytes_GET_SIZE(url) else PyBytes_FromStringAndSize(p, n)
        path = _normalize(raw, policy)
        if path is None:
            return False
        req.path = path
        return self._match(req.method, req.host, path, None)

    cdef _match(self, str method, str host, str path, frozenset skip):
        cdef _Entry e
        cdef list entries, params
        cdef set allowed
        cdef dict found
        cdef Py_ssize_t i, n
        cdef str rest
        if not self.frozen:
            raise RuntimeError("freeze() the router before matching")
        # PERF: no static routes (a table of `/{proxy+}` routes), no lookup: its hash and probe are ~150 instructions.
        if self._static:
            entries = self._static.get(path)
            if entries is not None:
                for e in entries:
                    if _host_ok(e, host) and (e.any_method or method in e.methods):
                        if skip is not None and e.route in skip:
                            continue
                        return e.route, {}
        if self._greedy_root:
            # PERF: the root has only greedy routes (`/{proxy+}`): the walk would pick among the root's entries
            # ("/") or its greedy entries with the path's segments joined, so neither split nor walk (with the
            # skipped static lookup: 55.4k -> 53.6k instructions an exchange, bench/instructions.py --scenario proxy).
            rest = _rest(path, 0)
            if rest:
                e = _pick(self._root.greedy_entries, method, host, None, skip)
                if e is not None:
                    return e.route, {e.param_names[0]: rest}
                entries = self._root.greedy_entries
            else:
                entries = self._root.entries
                e = _pick(entries, method, host, None, skip)
                if e is not None:
                    return e.route, {}
            allowed = set()
            _pick(entries, method, host, allowed, skip)
            if allowed:
                return None, tuple(sorted(allowed))
            return None
        n = len(path)
        params = []
        e = _walk(self._root, path, 0, n, method, host, params, None, skip)
        if e is not None:
            n = len(params)
            if n == 0:
                return e.route, {}
            if n == 1:
                return e.route, {e.param_names[0]: params[0]}
            found = {}
            for i in range(n):
                found[e.param_names[i]] = params[i]
            return e.route, found
        allowed = set()
        _walk(self._root, path, 0, len(path), method, host, [], allowed, skip)
        if allowed:
            return None, tuple(sorted(allowed))
        return None


cdef str _rest(str path, Py_ssize_t start):
    # The non-empty segments of `path[start:]` joined by "/" (what a greedy parameter takes), as
    # "/".join([s for s in path[start:].split("/") if s]) gives it: one slice unless that part holds "//".
    cdef Py_ssize_t n = len(path), end = n
    while start < end and path[start] == u"/":
        start += 1
    while end > start and path[end - 1] == u"/":
        end -= 1
    # PERF: one search where a loop indexing the str cost ~30 instructions a character (callgrind).
    if end - start > 1 and PyUnicode_Find(path, "//", start, end, 1) >= 0:
        return "/".join([s for s in path[start:end].split("/") if s])
    if start == 0 and end == n:
        return path
    return path[start:end]


cdef _Entry _copy_entry(e, dict made):
    cdef _Entry c = made.get(id(e))
    if c is None:
        c = made[id(e)] = _Entry(e.route, e.name, e.methods, e.host_kind, e.host, e.param_names, e.order)
    return c


cdef _Node _copy_node(node, dict made):
    cdef _Node c = _Node()
    c.literals = {lit: _copy_node(child, made) for lit, child in node.literals.items()}
    c.constrained = [_copy_node(child, made) for child in node.constrained]  # frozen: in the order to try them
    c.fullmatch = node.pattern.fullmatch if node.pattern is not None else None
    c.param = _copy_node(node.param, made) if node.param is not None else None
    c.entries = [_copy_entry(e, made) for e in node.entries]
    c.greedy_entries = [_copy_entry(e, made) for e in node.greedy_entries]
    return c
