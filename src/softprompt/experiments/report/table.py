"""A report table: methods as rows, mean ± std over seeds per column, the best soft prompt in bold."""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass


@dataclass
class Row:
    label: str
    values: dict[str, list[float]]  # column -> one value per seed
    eligible: bool = True  # may be bold (soft-prompt methods; baselines are not)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row]
    mean_column: bool = True
    better: str | None = "high"  # "high" | "low" | None (no bold)
    decimals: int = 1
    integer: bool = False  # counts (trainable parameters): 1,234,567, no std
    note: str = ""
    first_header: str = "Method"

    def stats(self, row: Row, col: str) -> tuple[float, float | None, int] | None:
        vals = [v for v in row.values.get(col, []) if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            return None
        std = statistics.stdev(vals) if len(vals) > 1 else None
        return statistics.fmean(vals), std, len(vals)

    def row_mean(self, row: Row) -> tuple[float, bool] | None:
        """Mean over the row's column means; complete is False when some column has no value."""
        means = [s[0] for s in (self.stats(row, c) for c in self.columns) if s is not None]
        if not means:
            return None
        return statistics.fmean(means), len(means) == len(self.columns)

    def _fmt(self, x: float) -> str:
        if self.integer:
            return f"{int(round(x)):,}"
        return f"{x:.{self.decimals}f}"

    def _best(self, values: list[tuple[Row, float]]) -> set[str]:
        if self.better is None:
            return set()
        pool = [(r, round(v, self.decimals)) for r, v in values if r.eligible]
        if not pool:
            return set()
        target = max(v for _, v in pool) if self.better == "high" else min(v for _, v in pool)
        return {r.label for r, v in pool if v == target}

    def grid(self) -> tuple[list[str], list[list[tuple[str, bool]]]]:
        """Header and rows of (text, bold) cells."""
        header = [self.first_header] + self.columns + (["Mean"] if self.mean_column else [])
        bold: dict[str, set[str]] = {}
        for col in self.columns:
            vals = [(r, s[0]) for r in self.rows if (s := self.stats(r, col)) is not None]
            bold[col] = self._best(vals)
        if self.mean_column:
            # only complete rows compete: a mean over fewer columns is not comparable
            vals = [(r, m[0]) for r in self.rows if (m := self.row_mean(r)) is not None and m[1]]
            bold["Mean"] = self._best(vals)
        body = []
        most = max((s[2] for r in self.rows for c in self.columns if (s := self.stats(r, c)) is not None), default=0)
        for r in self.rows:
            cells = [(r.label, False)]
            for col in self.columns:
                s = self.stats(r, col)
                if s is None:
                    text = "–"
                elif s[1] is None or self.integer:
                    text = self._fmt(s[0])
                else:
                    text = f"{self._fmt(s[0])} ± {s[1]:.{self.decimals}f}"
                if s is not None and s[2] < most and not self.integer:
                    text += f" (n={s[2]})"  # fewer seeds than the table's other cells
                cells.append((text, r.label in bold[col] and s is not None))
            if self.mean_column:
                m = self.row_mean(r)
                text = "–" if m is None else self._fmt(m[0]) + ("" if m[1] else " †")
                cells.append((text, m is not None and r.label in bold["Mean"]))
            body.append(cells)
        return header, body

    def markdown(self) -> str:
        header, body = self.grid()
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for cells in body:
            lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in cells) + " |")
        notes = []
        if self.mean_column and any(t.endswith("†") for cells in body for t, _ in cells[-1:]):
            notes.append("† mean over the columns that have a result (never bold)")
        if self.note:
            notes.append(self.note)
        if notes:
            lines += [""] + [f"_{n}_  " for n in notes]
        return "\n".join(lines)

    def html(self) -> str:
        header, body = self.grid()
        out = [f"<h3>{html.escape(self.title)}</h3>", "<table>", "<tr>" + "".join(
            f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        for cells in body:
            tds = []
            for i, (t, b) in enumerate(cells):
                t = html.escape(t)
                tds.append(f"<td{' class=l' if i == 0 else ''}>{'<b>' + t + '</b>' if b else t}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</table>")
        if self.note:
            out.append(f"<p class=note>{html.escape(self.note)}</p>")
        return "\n".join(out)
