"""
Pass/fail floors of the learned fuser on long videos (``tvf benchmark-quality``).

:func:`floor_checks` takes the steady-state numbers of one condition set,
``{condition: {fuser: {metric: value}}}`` (conditions ``clean`` and ``degraded``,
fusers as row labels, metrics ``VIF``, ``Qabf``, ``flowD``, ``grid``), and returns
one :class:`FloorCheck` per floor whose numbers are all there.  Every check compares
a ratio, learned over a reference row, with a threshold:

* clean: learned / multiscale VIF and Qabf >= 0.98; flowD <= 1.0.
* degraded: learned / the best non-learned row (highest of average, max,
  multiscale, per metric) VIF and Qabf >= 1.5; learned / the steadiest
  non-learned row (lowest flowD) flowD <= 0.5.
* memory (learned / learned-no-memory): VIF and Qabf >= 0.99 on both conditions
  (memory costs at most 1 %); flowD <= 0.8 on degraded (memory lowers it by at
  least 20 %) and <= 1.0 on clean (memory does not raise it).
* block grid: ``abs(learned / learned-no-memory - 1)`` of the block-grid energy
  <= 0.02 on both conditions (memory changes the grid by at most 2 %, either way).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

CLASSIC = ("average", "max", "multiscale")
Results = dict[str, dict[str, dict[str, float]]]


class FloorCheck(NamedTuple):
    name: str        # says the ratio and the relation, e.g. "... >= needed"
    needed: float
    measured: float
    passed: bool


def _value(results: Results, condition: str, fuser: str, metric: str) -> float | None:
    value = results.get(condition, {}).get(fuser, {}).get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def _ratio(results: Results, condition: str, metric: str, reference: str) -> float | None:
    learned = _value(results, condition, "learned", metric)
    base = _value(results, condition, reference, metric)
    if learned is None or base is None or base == 0:
        return None
    return learned / base


def _best_classic(results: Results, condition: str, metric: str, lowest: bool) -> str | None:
    values = {name: _value(results, condition, name, metric) for name in CLASSIC}
    values = {name: v for name, v in values.items() if v is not None}
    if not values:
        return None
    return (min if lowest else max)(values, key=values.__getitem__)


def floor_checks(results: Results) -> list[FloorCheck]:
    """Every floor (module docstring) whose inputs are present, in a fixed order."""
    checks: list[FloorCheck] = []

    def check(name: str, measured: float | None, needed: float, at_least: bool) -> None:
        if measured is not None:
            passed = measured >= needed if at_least else measured <= needed
            checks.append(FloorCheck(f"{name} {'>=' if at_least else '<='} needed",
                                     needed, measured, passed))

    for metric in ("VIF", "Qabf"):
        check(f"clean: learned / multiscale {metric}",
              _ratio(results, "clean", metric, "multiscale"), 0.98, True)
    check("clean: learned / multiscale flowD", _ratio(results, "clean", "flowD", "multiscale"),
          1.0, False)
    for metric in ("VIF", "Qabf"):
        best = _best_classic(results, "degraded", metric, lowest=False)
        if best:
            check(f"degraded: learned / best non-learned ({best}) {metric}",
                  _ratio(results, "degraded", metric, best), 1.5, True)
    steadiest = _best_classic(results, "degraded", "flowD", lowest=True)
    if steadiest:
        check(f"degraded: learned / steadiest non-learned ({steadiest}) flowD",
              _ratio(results, "degraded", "flowD", steadiest), 0.5, False)
    for condition in ("clean", "degraded"):
        for metric in ("VIF", "Qabf"):
            check(f"{condition} memory: learned / learned-no-memory {metric}",
                  _ratio(results, condition, metric, "learned-no-memory"), 0.99, True)
    check("degraded memory: learned / learned-no-memory flowD",
          _ratio(results, "degraded", "flowD", "learned-no-memory"), 0.8, False)
    check("clean memory: learned / learned-no-memory flowD",
          _ratio(results, "clean", "flowD", "learned-no-memory"), 1.0, False)
    for condition in ("clean", "degraded"):
        ratio = _ratio(results, condition, "grid", "learned-no-memory")
        check(f"{condition} block grid: abs(learned / learned-no-memory - 1)",
              None if ratio is None else abs(ratio - 1.0), 0.02, False)
    return checks


def floors_markdown(overall: Results, per_video: dict[str, Results]) -> str:
    """One table: every check over the video average, then per video."""
    checks = floor_checks(overall)
    if not checks:
        return ("Floors: nothing to check (they need the learned rows, learned-no-memory and "
                "the non-learned ones over the steady-state window).")

    def key(c: FloorCheck) -> str:  # the reference row named in brackets may differ by video
        return re.sub(r" \(.*?\)", "", c.name)

    per = {video: {key(c): c for c in floor_checks(results)}
           for video, results in per_video.items()}
    videos = list(per)
    lines = ["Floors (steady-state window; ratios of the learned row to the reference named):",
             "",
             "| check | needed | all videos | " + " | ".join(videos) + " |",
             "|---|---|---|" + "---|" * len(videos)]

    def cell(c: FloorCheck | None) -> str:
        return "" if c is None else f"{c.measured:.3f} {'pass' if c.passed else 'FAIL'}"

    for c in checks:
        lines.append(f"| {c.name} | {c.needed:g} | {cell(c)} | "
                     + " | ".join(cell(per[v].get(key(c))) for v in videos) + " |")
    failed = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - failed} of {len(checks)} floors pass over all videos."]
    return "\n".join(lines)
