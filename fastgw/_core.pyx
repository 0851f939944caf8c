# cython: language_level=3
"""Compiled core of fastgw: the route trie and the token-bucket table.

The specification is `fastgw/_pycore.py`; this module gives the same answers (the property tests in
tests/property/ run both side by side) and only makes them cheaper. Keep the two in step.
"""

from fastgw._pycore import (
    ANY,
    GREEDY,
    HOST_ANY,
    HOST_EXACT,
    HOST_WILDCARD,
    LITERAL,
    PARAM,
    RouteConflict,
    _dump_lines,
    _host_kind,
    parse_template,
)

__all__ = ["ANY", "BucketTable", "RouteConflict", "Router", "parse_template"]

cdef long long _MAX_UNITS = (<long long>1) << 62


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
        self.param = None
        self.entries = []
        self.greedy_entries = []


def _sort_key(_Entry e):
    return (-e.host_kind, -len(e.host), e.order)


cdef inline bint _host_ok(_Entry e, str host):
    if e.host_kind == HOST_ANY:
        return True
    if e.host_kind == HOST_EXACT:
        return host == e.host
    return len(host) > len(e.host) and host.endswith(e.host)


cdef _Entry _pick(list entries, str method, str host, set allowed):
    cdef _Entry e
    for e in entries:
        if not _host_ok(e, host):
            continue
        if e.any_method or method in e.methods:
            return e
        allowed.update(e.methods)
    return None


cdef _Entry _walk(_Node node, list segs, Py_ssize_t i, Py_ssize_t n, str method, str host, list params,
                  set allowed):
    # Each trie edge consumes exactly one segment, so a node is only ever tried at one depth: the walk visits
    # each node at most once and its cost is bounded by the size of the trie, whatever the path.
    cdef _Node child
    cdef _Entry found
    if i == n:
        if node.entries:
            return _pick(node.entries, method, host, allowed)
        return None
    child = node.literals.get(segs[i])
    if child is not None:
        found = _walk(child, segs, i + 1, n, method, host, params, allowed)
        if found is not None:
            return found
    if node.param is not None:
        params.append(segs[i])
        found = _walk(node.param, segs, i + 1, n, method, host, params, allowed)
        if found is not None:
            return found
        params.pop()
    if node.greedy_entries:
        found = _pick(node.greedy_entries, method, host, allowed)
        if found is not None:
            params.append("/".join(segs[i:]))
            return found
    return None


cdef class Router:
    """Route table: `add` routes, `freeze`, then `match` (method, host, path). See `fastgw._pycore.Router`."""

    def __cinit__(self):
        self._root = _Node()
        self._static = {}
        self._shapes = {}
        self._count = 0
        self.frozen = False

    def __len__(self):
        return self._count

    def add(self, route, methods, str path, host=None, name=None):
        cdef _Entry entry, other
        cdef _Node node, child
        if self.frozen:
            raise RuntimeError("router is frozen; build a new one to change routes")
        mset = frozenset(m.upper() for m in methods)
        if not mset:
            raise ValueError(f"route {path!r}: at least one method is required")
        shape, names = parse_template(path)
        kind, hostkey = _host_kind(host)
        label = name if name is not None else f"{','.join(sorted(mset))} {host or '*'}{path}"
        entry = _Entry(route, label, mset, kind, hostkey, names, self._count)
        key = (kind, hostkey, shape)
        for other in self._shapes.get(key, ()):
            if entry.any_method or other.any_method or (mset & other.methods):
                raise RouteConflict(
                    f"route {label!r} conflicts with route {other.name!r}: same path shape, host and method"
                )
        self._shapes.setdefault(key, []).append(entry)

        node = self._root
        greedy = False
        for seg_kind, literal in shape:
            if seg_kind == LITERAL:
                child = node.literals.get(literal)
                if child is None:
                    child = _Node()
                    node.literals[literal] = child
                node = child
            elif seg_kind == PARAM:
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                greedy = True
        if greedy:
            node.greedy_entries.append(entry)
        else:
            node.entries.append(entry)
        if all(k == LITERAL for k, _ in shape):
            canon = "/" + "/".join(lit for _, lit in shape)
            self._static.setdefault(canon, []).append(entry)
        self._count += 1

    def freeze(self):
        cdef _Node node
        stack = [self._root]
        while stack:
            node = stack.pop()
            node.entries.sort(key=_sort_key)
            node.greedy_entries.sort(key=_sort_key)
            stack.extend(node.literals.values())
            if node.param is not None:
                stack.append(node.param)
        static = {}
        for path, entries in self._static.items():
            entries.sort(key=_sort_key)
            static[path] = entries
            if path != "/":
                static[path + "/"] = entries
        self._static = static
        self.frozen = True

    def match(self, str method, str host, str path):
        cdef _Entry e
        cdef list entries, segs, params
        cdef set allowed
        if not self.frozen:
            raise RuntimeError("freeze() the router before matching")
        entries = self._static.get(path)
        if entries is not None:
            for e in entries:
                if _host_ok(e, host) and (e.any_method or method in e.methods):
                    return e.route, {}
        segs = [s for s in path.split("/") if s]
        params = []
        allowed = set()
        e = _walk(self._root, segs, 0, len(segs), method, host, params, allowed)
        if e is not None:
            return e.route, dict(zip(e.param_names, params))
        if allowed:
            return None, tuple(sorted(allowed))
        return None

    def dump(self):
        lines = []
        _dump_node(self._root, "/", 0, lines)
        return "\n".join(lines) + "\n"


cdef _dump_node(_Node node, str label, int depth, list lines):
    lines.append(_dump_lines(label, depth, node.entries, node.greedy_entries))
    for lit in sorted(node.literals):
        _dump_node(node.literals[lit], lit, depth + 1, lines)
    if node.param is not None:
        _dump_node(node.param, "{}", depth + 1, lines)


# ------------------------------------------------------------------------------------------------------------
# Token buckets


cdef class _Bucket:
    pass


cdef class BucketTable:
    """Token buckets keyed by string, integer arithmetic, clock passed in. See `fastgw._pycore.BucketTable`."""

    def __cinit__(self, long long capacity, long long refill_tokens, long long refill_period_ns,
                  Py_ssize_t max_keys=100_000):
        if capacity < 1 or refill_tokens < 1 or refill_period_ns < 1 or max_keys < 1:
            raise ValueError("capacity, refill_tokens, refill_period_ns and max_keys must all be >= 1")
        # Checked by division: the product itself could overflow.
        if capacity >= _MAX_UNITS // refill_period_ns:
            raise ValueError("capacity * refill_period_ns must stay below 2**62")
        self.capacity = capacity
        self.refill_tokens = refill_tokens
        self.refill_period_ns = refill_period_ns
        self.max_keys = max_keys
        self._cap_units = capacity * refill_period_ns
        self._buckets = {}

    def __len__(self):
        return len(self._buckets)

    cdef long long _level(self, _Bucket b, long long now_ns):
        cdef long long need, elapsed
        if now_ns <= b.last:
            return b.units
        need = self._cap_units - b.units
        elapsed = now_ns - b.last
        if elapsed >= (need + self.refill_tokens - 1) // self.refill_tokens:
            return self._cap_units
        # elapsed * refill_tokens < need + refill_tokens <= cap_units + refill_tokens: no overflow.
        return b.units + elapsed * self.refill_tokens

    def take(self, str key, long long now_ns, long long cost=1):
        cdef _Bucket b
        cdef long long units, cost_units, period = self.refill_period_ns
        if cost < 0:
            raise ValueError("cost must be >= 0")
        b = self._buckets.pop(key, None)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now_ns)
            b = _Bucket()
            b.units = self._cap_units
            b.last = now_ns
            units = self._cap_units
        else:
            units = self._level(b, now_ns)
            if now_ns > b.last:
                b.last = now_ns
        self._buckets[key] = b
        b.units = units
        if cost > self.capacity:
            return False, units // period, -1
        cost_units = cost * period
        if units >= cost_units:
            b.units = units - cost_units
            return True, b.units // period, 0
        return False, units // period, (cost_units - units + self.refill_tokens - 1) // self.refill_tokens

    cdef void _make_room(self, long long now_ns):
        cdef dict buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if self._level(<_Bucket>buckets[key], now_ns) < self._cap_units:
                break
            del buckets[key]
        if len(buckets) >= self.max_keys:
            del buckets[next(iter(buckets))]

    def sweep(self, long long now_ns):
        full = [k for k, b in self._buckets.items() if self._level(<_Bucket>b, now_ns) >= self._cap_units]
        for k in full:
            del self._buckets[k]
        return len(full)

    def clear(self):
        self._buckets.clear()
