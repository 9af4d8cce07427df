"""Server-drawn SVG: an entry's inclusion path up to the checkpoint root, and the tree's growth."""

from __future__ import annotations

from datetime import datetime
from html import escape

from portal.selectors import InclusionPath

ROW = 64
BOX_W = 200
BOX_H = 44
COLUMN = {"left": 10, "middle": 230, "right": 450}
WIDTH = 660


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


def _range(span: tuple[int, int]) -> str:
    lo, hi = span
    return f"leaf {lo}" if hi - lo == 1 else f"leaves {lo}–{hi - 1}"


def _box(x: int, y: int, role: str, title: str, digest: bytes, caption: str) -> str:
    """A node: full hash in data-hash (and the tooltip), shortened in the text."""
    return (
        f'<g class="node {role}" data-role="{role}" data-hash="{digest.hex()}">'
        f"<title>{escape(title)}: {digest.hex()}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
        f'<text x="{x + 10}" y="{y + 18}">{escape(caption)}</text>'
        f'<text x="{x + 10}" y="{y + 36}" class="hash">{_short(digest)}</text></g>'
    )


def inclusion_path_svg(path: InclusionPath) -> str:
    """Root at the top, the leaf at the bottom; at each level the path's node in the middle and
    the proof's hash on the side it is hashed from, with lines to the parent they make."""
    levels = len(path.steps)
    # A tree of one leaf has no proof: its leaf is drawn under the root it equals.
    rows = max(levels, 1)
    height = (rows + 1) * ROW + 16
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="inclusion-path" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" aria-labelledby="path-title path-desc">',
        f'<title id="path-title">Inclusion path of leaf {path.leaf_index} in the tree of size '
        f"{path.tree_size}</title>",
        f'<desc id="path-desc">{levels} proof hashes combine the leaf hash into the root '
        f"{'that the signed checkpoint states' if path.matches else 'which DIFFERS from the checkpoint'}"  # noqa: E501
        ".</desc>",
    ]

    def y_of(level: int) -> int:
        """Top of the row of `level` (0 is the leaf, `rows` the root)."""
        return 8 + (rows - level) * ROW

    middle = COLUMN["middle"]
    root_role = "root" if path.matches else "root mismatch"
    parts.append(
        _box(
            middle,
            y_of(rows),
            root_role,
            f"root of tree size {path.tree_size}",
            path.root,
            f"root, size {path.tree_size}" + (" ✓" if path.matches else " ✗"),
        )
    )
    for step in path.steps:
        y = y_of(step.level)
        parent_bottom = y_of(step.level + 1) + BOX_H
        side = COLUMN["left"] if step.sibling_on_left else COLUMN["right"]
        for x in (middle, side):
            parts.append(
                f'<line x1="{x + BOX_W // 2}" y1="{y}" x2="{middle + BOX_W // 2}" '
                f'y2="{parent_bottom}"/>'
            )
        node_role = "leaf" if step.level == 0 else "path"
        node_caption = f"leaf {path.leaf_index}" if step.level == 0 else _range(step.node_range)
        parts.append(
            _box(middle, y, node_role, f"{_range(step.node_range)}", step.node, node_caption)
        )
        parts.append(
            _box(
                side,
                y,
                "sibling",
                f"proof hash {step.level}, {_range(step.sibling_range)}",
                step.sibling,
                f"proof {step.level}: {_range(step.sibling_range)}",
            )
        )
    if not path.steps:
        x = middle + BOX_W // 2
        parts.append(f'<line x1="{x}" y1="{y_of(0)}" x2="{x}" y2="{y_of(1) + BOX_H}"/>')
        parts.append(
            _box(middle, y_of(0), "leaf", "leaf", path.leaf_hash, f"leaf {path.leaf_index} = root")
        )
    parts.append("</svg>")
    return "".join(parts)


def tree_size_chart_svg(series: list[tuple[datetime, int]]) -> str:
    """Tree size against sealing time as a step line, axes labelled with the first and last
    time and the largest size."""
    width, height, left, bottom, top, right = 640, 240, 70, 200, 16, 16
    if not series:
        return ""
    first, last = series[0][0], series[-1][0]
    span = max((last - first).total_seconds(), 1.0)
    largest = max(size for _, size in series) or 1

    def x_of(moment: datetime) -> float:
        return left + (width - left - right) * (moment - first).total_seconds() / span

    def y_of(size: int) -> float:
        return bottom - (bottom - top) * size / largest

    points = []
    previous_y = y_of(0)
    for moment, size in series:
        x = x_of(moment)
        points.append(f"{x:.1f},{previous_y:.1f}")
        previous_y = y_of(size)
        points.append(f"{x:.1f},{previous_y:.1f}")
    label = (
        f"Tree size over time: from {series[0][1]:,} entries on {first:%Y-%m-%d %H:%M} UTC "
        f"to {series[-1][1]:,} on {last:%Y-%m-%d %H:%M} UTC"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tree-chart" role="img" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<line class="axis" x1="{left}" y1="{bottom}" x2="{width - right}" y2="{bottom}"/>'
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>'
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{largest:,}</text>'
        f'<text x="{left - 6}" y="{bottom}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{bottom + 22}">{first:%Y-%m-%d %H:%M:%S}</text>'
        f'<text x="{width - right}" y="{bottom + 22}" text-anchor="end">'
        f"{last:%Y-%m-%d %H:%M:%S} UTC</text>"
        f'<polyline class="series" points="{" ".join(points)}"/>'
        "</svg>"
    )
