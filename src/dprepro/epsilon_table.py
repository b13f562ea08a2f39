"""What `dprepro epsilon` prints for a spec: every accountant's epsilon, what each assumes and whether
it holds for the spec's training, the value of record, published values recomputed under their own
convention, and (optionally) the curve after each epoch. Computed from the spec alone, no training."""

from __future__ import annotations

import math

from dprepro import accounting
from dprepro.lower_bounds import published_against
from dprepro.spec import Spec
from dprepro.records.result import EpsilonBlock


def row(spec: Spec, curve: bool = False) -> dict:
    """The spec's epsilon block (None for a non-private spec), its published values, its curve."""
    out = {"spec": spec.path, "name": spec.name, "version": spec.version}
    if not spec.private:
        return {**out, "epsilon": None, "note": "non-private spec: no epsilon"}
    out.update(epsilon=accounting.epsilon_block(spec),
               expected={q: e.to_dict() for q, e in spec.expected.items()})
    if curve:
        out["curve"] = accounting.epsilon_curve(spec)
    return out


def fmt_eps(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.7f}"


def text(row: dict) -> str:
    lines = [f"{row['spec']}  ({row['name']} v{row['version']})"]
    block = row["epsilon"]
    if block is None:
        return "\n".join([*lines, f"  {row['note']}", ""])
    lines.append(f"  n {block['n']}, q {block['q']:.6g}, {block['sampling']} sampling, "
                 f"{block['microbatch_size']} example(s) per microbatch, {block['steps']} steps trained "
                 f"({block['steps_rule'].split(':')[0]}), noise {block['noise_multiplier']}, delta {block['delta']:g}")
    counted = ", ".join(n for n, v in block["accountants"].items() if v.get("counts_releases", True))
    for release in block.get("releases", []):
        lines.append(f"  released before training (composed into {counted}): {release['mechanism']}")
    with_tests = ", ".join(n for n, v in block["accountants"].items() if v.get("counts_tests", True))
    for test in block.get("tests", []):
        lines.append(f"  tested with every step, sampling rate {test['sampling_rate']:.6g} (composed into {with_tests}): "
                     f"{test['mechanism']}")
    lines.append(f"  {'accountant':<26} {'epsilon':>10}  {'order':<8} {'steps':>6}  holds  why")
    for name, v in block["accountants"].items():
        order = f"{v['order']:g}" if v["order"] is not None else "-"
        holds = "yes" if v["holds_for_this_run"] else "no"
        lines.append(f"  {name:<26} {fmt_eps(v['epsilon']):>10}  {order:<8} {v['steps']:>6}  {holds:<5}  {v['label']}")
    typed = EpsilonBlock.from_json(block)
    if typed.of_record:
        lines.append(f"  of record (smallest that holds): {typed.of_record} {fmt_eps(typed.value_of_record)}")
    else:
        lines.append("  of record: none (no value holds for this spec's training: see each one's why)")
    for name, v in block.get("lower_bounds", {}).items():
        lines.append(f"  {'at least: ' + name:<26} {fmt_eps(v['epsilon']):>10}  {'-':<8} "
                     f"{v.get('steps', v.get('epochs', '-')):>6}  lower  {v['description']}")
    if block.get("interval"):
        lines.append(f"  interval: {block['interval']['text']}")
        expected = {q: e["value"] for q, e in row["expected"].items()}
        for quantity, value, lies in published_against(expected, block):
            lines.append(f"  published {quantity} {value:g} is {lies}")
    for quantity, v in block["under_published_conventions"].items():
        entry = row["expected"][quantity]
        lines.append(f"  published {quantity} {entry['value']:g}, computed as published "
                     f"(used_microbatching {str(v['used_microbatching']).lower()}, steps {v['steps_rule']}): "
                     f"{fmt_eps(v['epsilon'])}" + (f"; {entry['note']}" if entry.get("note") else ""))
    if "curve" in row:
        names = list(row["curve"])
        lines.append("  epoch " + " ".join(f"{n:>25}" for n in names))
        for i in range(len(row["curve"][names[0]])):
            lines.append(f"  {i + 1:>5} " + " ".join(f"{fmt_eps(row['curve'][n][i]):>25}" for n in names))
    return "\n".join([*lines, ""])
