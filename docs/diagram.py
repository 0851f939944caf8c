"""Draws docs/request-path.svg: the request's way through fastgw (DESIGN.md's "The request's way through the
house"). Plain Python, no dependencies; the output is deterministic, and tests/unit/test_docs.py fails when the
committed SVG is not what this script draws. Run it (or `make diagram`) after editing the picture here.

    python docs/diagram.py            # writes docs/request-path.svg
"""

from __future__ import annotations

import sys
from html import escape
from pathlib import Path

OUT = Path(__file__).resolve().parent / "request-path.svg"
WIDTH, HEIGHT = 1000, 720
FONT = "font-family='Helvetica, Arial, sans-serif'"

# Fill and stroke per kind of box: what the connection does, what the compiled core does, plugin phases,
# integrations, and what is planned (dashed).
STYLES = {
    "wire": ("#e8f1fb", "#2f6db5"),
    "core": ("#fff4e0", "#c77700"),
    "phase": ("#eaf7ec", "#2e8b47"),
    "integration": ("#f3ecfa", "#7a4bb0"),
    "outside": ("#f4f4f4", "#666666"),
    "next": ("#ffffff", "#9a9a9a"),
}


# The integrations drawn side by side under the exchange: the config's integration types (tests/unit/test_docs.py
# holds this list to fastgw.config.schema's and the http box to its balancers, so the picture cannot go stale).
INTEGRATIONS = (
    (
        "http",
        "integration",
        ("round-robin (weighted),", "least-connections, consistent", "hash, random two choices"),
    ),
    ("lambda", "integration", ("Lambda proxy event 1.0/2.0,", "warm worker pool", "-> python / node")),
    ("mock", "integration", ("a fixed response,", "prebuilt head")),
    ("aggregate", "integration", ("fan out to several", "integrations, merge JSON")),
)


class Drawing:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.boxes: list[tuple[str, str, tuple[str, ...]]] = []  # (kind, title, lines), for the tests

    def box(self, x: int, y: int, w: int, h: int, kind: str, title: str, *lines: str) -> tuple[int, int, int, int]:
        self.boxes.append((kind, title, lines))
        fill, stroke = STYLES[kind]
        dash = " stroke-dasharray='6 4'" if kind == "next" else ""
        self.parts.append(
            f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='{fill}' stroke='{stroke}' "
            f"stroke-width='1.6'{dash}/>"
        )
        colour = "#777777" if kind == "next" else "#1b1b1b"
        self.text(x + w // 2, y + 21, title, size=14, bold=True, colour=colour)
        for i, line in enumerate(lines):
            self.text(x + w // 2, y + 40 + 16 * i, line, size=12, colour="#444444" if kind != "next" else "#888888")
        return x, y, w, h

    def text(
        self,
        x: int,
        y: int,
        s: str,
        size: int = 12,
        bold: bool = False,
        colour: str = "#1b1b1b",
        anchor: str = "middle",
    ) -> None:
        weight = " font-weight='bold'" if bold else ""
        self.parts.append(
            f"<text x='{x}' y='{y}' {FONT} font-size='{size}'{weight} fill='{colour}' "
            f"text-anchor='{anchor}'>{escape(s)}</text>"
        )

    def arrow(self, points: list[tuple[int, int]], label: str = "", at: int = 0, dashed: bool = False) -> None:
        """A polyline ending in an arrowhead; `label` beside segment `at`."""
        path = " ".join(f"{x},{y}" for x, y in points)
        dash = " stroke-dasharray='5 4'" if dashed else ""
        self.parts.append(
            f"<polyline points='{path}' fill='none' stroke='#333333' stroke-width='1.5'{dash} marker-end='url(#head)'/>"
        )
        if label:
            (x1, y1), (x2, y2) = points[at], points[at + 1]
            if y1 == y2:  # horizontal: above the line
                self.text((x1 + x2) // 2, y1 - 7, label, size=11, colour="#333333")
            else:  # vertical: to the right of the line
                self.text(x1 + 8, (y1 + y2) // 2 + 4, label, size=11, colour="#333333", anchor="start")

    def svg(self) -> str:
        head = (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
            f"viewBox='0 0 {WIDTH} {HEIGHT}'>\n"
            "<title>The request's way through fastgw</title>\n"
            "<defs><marker id='head' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
            "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#333333'/></marker></defs>\n"
            f"<rect x='0' y='0' width='{WIDTH}' height='{HEIGHT}' fill='#ffffff'/>\n"
        )
        return head + "\n".join(self.parts) + "\n</svg>\n"


def draw() -> str:
    return drawing().svg()


def drawing() -> Drawing:
    d = Drawing()
    d.text(WIDTH // 2, 28, "The request's way through fastgw", size=18, bold=True)

    # The client, with the request going down on the left and the response coming back up on the right.
    d.box(40, 48, 920, 44, "outside", "client (HTTP/1.1, keep-alive, pipelining)")
    left, right, w = 40, 580, 380

    d.box(
        left,
        130,
        w,
        62,
        "wire",
        "server/protocol.py: the connection",
        "httptools parse, limits, deadlines,",
        "keep-alive, pipelining order",
    )
    d.box(
        left, 220, w, 48, "core", "pipeline/dispatch.py: the path policy", "escapes, dot segments: what matches goes on"
    )
    d.box(
        left,
        296,
        w,
        62,
        "core",
        "_core.Router.route (Cython trie)",
        "(host, method, path) -> route + params;",
        "then one Exchange owns the request",
    )
    d.box(
        left,
        386,
        w,
        62,
        "phase",
        "rewrite -> access phases",
        "request-id, cors, key/basic/jwt auth, acl,",
        "validation, request-transformer",
    )
    d.box(
        left,
        476,
        w,
        48,
        "wire",
        "Route.start(exchange)",
        "the integration's only way back: ex.write / done / fail",
    )

    d.box(right, 130, w, 62, "wire", "client leg", "one write for the head; backpressure", "couples the two legs")
    d.box(
        right,
        296,
        w,
        62,
        "wire",
        "one head ending: core.finish_head",
        "framing, Connection: one keep-alive rule;",
        'errors answer JSON {"message": ...}',
    )
    d.box(
        right,
        386,
        w,
        62,
        "phase",
        "header_filter / body_filter",
        "cors, response-transformer; held whole",
        "up to limits.max_filtered_response",
    )

    # The integrations, side by side under the exchange.
    y = 572
    iw = 218
    for i, (title, kind, lines) in enumerate(INTEGRATIONS):
        d.box(40 + i * (iw + 16), y, iw, 78, kind, title, *lines)

    d.box(right, 476, w, 48, "phase", "ex.done(): access log, log phase", "JSON lines, flushed off the hot path")

    # Request path, down the left column.
    cx = left + w // 2
    d.arrow([(cx, 92), (cx, 130)], "request", 0)
    d.arrow([(cx, 192), (cx, 220)])
    d.arrow([(cx, 268), (cx, 296)])
    d.arrow([(cx, 358), (cx, 386)], "a route matched", 0)
    d.arrow([(cx, 448), (cx, 476)], "no plugin answered", 0)
    # From the exchange to whichever integration the route has: one bus, an arrow down to each.
    bus = 548
    centres = [40 + i * (iw + 16) + iw // 2 for i in range(4)]
    d.parts.append(f"<polyline points='{cx},524 {cx},{bus}' fill='none' stroke='#333333' stroke-width='1.5'/>")
    d.parts.append(
        f"<polyline points='{centres[0]},{bus} {centres[-1]},{bus}' fill='none' stroke='#333333' stroke-width='1.5'/>"
    )
    for i, x in enumerate(centres):
        d.arrow([(x, bus), (x, y)], dashed=INTEGRATIONS[i][1] == "next")

    # Back, up the right column.
    rx = right + w // 2
    d.arrow([(left + w, 500), (520, 500), (520, 430), (right, 430)], "head, body", 0)
    d.arrow([(left + w, 410), (right, 410)], "a plugin's Response", 0)
    d.arrow([(left + w, 318), (right, 318)], "404 / 405 (Allow)", 0)
    d.arrow([(rx, 386), (rx, 358)])
    d.arrow([(rx, 296), (rx, 192)])
    d.arrow([(rx, 130), (rx, 92)], "response", 0)
    d.arrow([(rx + 120, 448), (rx + 120, 476)], dashed=True)

    # The legend.
    x, ly = 40, 680
    legend = [
        ("wire", "the connection"), ("core", "compiled core (and its pure-Python twin)"), ("phase", "plugin phases"),
        ("integration", "integrations"),
    ]  # fmt: skip
    if any(kind == "next" for kind, _, _ in d.boxes):
        legend.append(("next", "next, not built yet"))
    for kind, name in legend:
        fill, stroke = STYLES[kind]
        dash = " stroke-dasharray='4 3'" if kind == "next" else ""
        d.parts.append(f"<rect x='{x}' y='{ly}' width='18' height='14' rx='3' fill='{fill}' stroke='{stroke}'{dash}/>")
        d.text(x + 26, ly + 12, name, size=12, colour="#333333", anchor="start")
        x += 26 + 7 * len(name) + 28  # about 7 px per character at 12 px
    return d


def main(argv: list[str]) -> int:
    OUT.write_text(draw())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
