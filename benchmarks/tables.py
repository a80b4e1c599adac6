"""Markdown tables, the targets of the issue (checked, pass or not), and RESULTS.md."""

from __future__ import annotations

import math

from measure import Metrics

COLUMNS = ("attack", "library", "time (s)", "ex/s", "overhead ×", "robust acc.", "success",
           "median L2 (common)", "ε viol.", "box viol.", "model evals / img")


def _num(v, fmt="{:.2f}"):
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return fmt.format(v)


def _pct(v):
    return _num(None if v is None else 100 * v, "{:.1f}%")


def _robust(m: Metrics) -> str:
    """Mean robust accuracy over the repeats, with its standard error where the repeats differ."""
    return _pct(m.robust_accuracy) + (f" ± {100 * m.robust_sem:.1f}" if m.robust_sem > 0 else "")


def rows(attack_label: str, metrics: list[Metrics], linf: bool) -> list[list[str]]:
    out = []
    for m in metrics:
        if m.error:
            out.append([attack_label, m.library, f"failed: {m.error[:80]}"] + [""] * (len(COLUMNS) - 3))
            continue
        out.append([
            attack_label, m.library, _num(m.seconds), _num(m.examples_per_second, "{:.0f}"),
            _num(m.overhead), _robust(m), _pct(m.success_rate),
            _num(m.median_l2_common, "{:.3f}"), _num(m.eps_violations if linf else None, "{:d}"),
            _num(m.box_violations, "{:d}"), _num(m.rows_per_image, "{:.1f}"),
        ])
    return out


def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


# --- targets -----------------------------------------------------------------------------------

def _by_lib(metrics):
    return {m.library: m for m in metrics if not m.error}


def _fastest_peer(ms):
    peers = [m for lib, m in ms.items() if lib != "advcourse"]
    return min(peers, key=lambda m: m.seconds) if peers else None


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _ceiling(a: Metrics, peer: Metrics) -> str:
    """What the speed-up would be if advcourse did no work besides evaluating the model."""
    if a.model_seconds is None:
        return ""
    return (f"; at zero overhead {peer.seconds / a.model_seconds:.2f}× (the model alone needs "
            f"{a.model_seconds:.2f} s for advcourse's evaluations)")


def check_targets(model_name: str, results: dict) -> list[str]:
    """``results``: attack key -> list[Metrics] for this model.  Returns one line per target."""
    lines = []
    if "pgd" in results:
        ms = _by_lib(results["pgd"])
        a, fast = ms.get("advcourse"), _fastest_peer(ms)
        if a and fast:
            want = 5.0 if model_name == "undefended" else 1.5
            speed = fast.seconds / a.seconds
            best = min((m for lib, m in ms.items() if lib != "advcourse"), key=lambda m: m.robust_accuracy)
            lines.append(f"{_mark(speed >= want)} PGD speed: {speed:.2f}× the fastest peer ({fast.library}), "
                         f"target ≥ {want:g}×{_ceiling(a, fast)}")
            # random starts make robust accuracy a random variable: compare the means over the seeded
            # repeats, and count a difference within one standard error of the difference as equal
            gap, se = a.robust_accuracy - best.robust_accuracy, math.hypot(a.robust_sem, best.robust_sem)
            lines.append(f"{_mark(gap <= se)} PGD robust accuracy: {100 * a.robust_accuracy:.1f}% vs lowest peer "
                         f"{100 * best.robust_accuracy:.1f}% ({best.library}), difference {100 * gap:+.1f} "
                         f"± {100 * se:.1f} points; target ≤ (mean over the repeats' seeds, within one standard "
                         "error)")
            lines.append(f"{_mark(a.overhead <= 1.1)} PGD overhead factor: {a.overhead:.2f}, target ≤ 1.1")
    if "cw" in results:
        ms = _by_lib(results["cw"])
        a = ms.get("advcourse")
        if a:
            peers = {lib: m for lib, m in ms.items() if lib != "advcourse"}
            lines.append(f"{_mark(a.success_rate >= 1.0)} C&W success: {100 * a.success_rate:.1f}%, target 100%")
            if peers:
                best = min(peers.values(), key=lambda m: (math.isnan(m.median_l2_common), m.median_l2_common))
                lines.append(f"{_mark(a.median_l2_common <= best.median_l2_common)} C&W median L2: "
                             f"{a.median_l2_common:.3f} vs best peer {best.median_l2_common:.3f} ({best.library}), "
                             "target ≤")
            if "foolbox" in ms:
                speed = ms["foolbox"].seconds / a.seconds
                lines.append(f"{_mark(speed >= 3.0)} C&W speed: {speed:.2f}× foolbox, target ≥ 3×"
                             f"{_ceiling(a, ms['foolbox'])}")
    if "deepfool" in results:
        ms = _by_lib(results["deepfool"])
        a, fast = ms.get("advcourse"), _fastest_peer(ms)
        if a:
            lines.append(f"{_mark(a.success_rate >= 1.0)} DeepFool success: {100 * a.success_rate:.1f}%, "
                         "target 100%")
            peers = [m for lib, m in ms.items() if lib != "advcourse"]
            if peers:
                best = min(peers, key=lambda m: (math.isnan(m.median_l2_common), m.median_l2_common))
                ratio = a.median_l2_common / best.median_l2_common
                lines.append(f"{_mark(ratio <= 1.02)} DeepFool median L2: {a.median_l2_common:.3f} vs best peer "
                             f"{best.median_l2_common:.3f} ({best.library}) = {ratio:.3f}×, target ≤ 1.02×")
            if fast:
                speed = fast.seconds / a.seconds
                lines.append(f"{_mark(speed >= 2.0)} DeepFool speed: {speed:.2f}× the fastest peer "
                             f"({fast.library}), target ≥ 2×")
    if "strong" in results:
        ms = _by_lib(results["strong"])
        a, aa = ms.get("advcourse"), ms.get("torchattacks")
        if a and aa:
            gap = 100 * (a.robust_accuracy - aa.robust_accuracy)
            # a lower robust accuracy than AutoAttack's is a *stronger* evaluation, not a miss
            lines.append(f"{_mark(gap <= 2.0)} strong evaluation: {100 * a.robust_accuracy:.1f}% vs AutoAttack "
                         f"{100 * aa.robust_accuracy:.1f}% ({gap:+.1f} points), target at most 2 points above")
    return lines
