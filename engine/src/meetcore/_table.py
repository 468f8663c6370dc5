"""Render the transition table for people: a Markdown table and a Mermaid diagram.

`docs/domain.md` embeds this output, and a test fails when the two differ, so the
documentation is always the table the code runs.
"""

from __future__ import annotations

from meetcore._decider import COMMON_CODES, TRANSITIONS, Refusal
from meetcore._state import Phase
from meetcore.commands import COMMAND_TYPES

__all__ = ["render_transitions"]


def _codes(codes: frozenset[int]) -> str:
    return ", ".join(str(c) for c in sorted(codes))


def render_transitions() -> str:
    """The transitions as Markdown: one row per command, one column per phase."""
    phases = list(Phase)
    lines = [
        "| command | " + " | ".join(p.value for p in phases) + " |",
        "|---|" + "---|" * len(phases),
    ]
    for kind in COMMAND_TYPES:
        cells = []
        for phase in phases:
            row = TRANSITIONS[(phase, kind)]
            if isinstance(row, Refusal):
                cells.append(f"refused {int(row.code)}")
            else:
                targets = "/".join(p.value for p in phases if p in row.to)
                rejects = f"; may reject {_codes(row.codes)}" if row.codes else ""
                cells.append(f"-> {targets}{rejects}")
        lines.append(f"| `{kind.__name__}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Any command may also be rejected with "
        + " or ".join(str(c) for c in sorted(COMMON_CODES))
        + " (a negative `at`, a malformed `commandId`, a command for another meeting).",
        "",
        "```mermaid",
        "stateDiagram-v2",
        "    [*] --> absent",
    ]
    edges: dict[tuple[Phase, Phase], list[str]] = {}
    for (phase, kind), row in TRANSITIONS.items():
        if isinstance(row, Refusal):
            continue
        for target in row.to:
            edges.setdefault((phase, target), []).append(kind.__name__)
    for (source, target), kinds in sorted(
        edges.items(), key=lambda e: (e[0][0].value, e[0][1].value)
    ):
        name = {Phase.IN_SESSION: "in_session"}.get
        lines.append(
            f"    {name(source, source.value)} --> {name(target, target.value)}: {', '.join(kinds)}"
        )
    lines.append("```")
    return "\n".join(lines) + "\n"
