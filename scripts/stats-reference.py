#!/usr/bin/env python3
"""Reference values for tollgate's statistics tests, computed with SciPy.

Writes src/decision/sequential/reference.json, which the unit tests in
src/decision/sequential/tests.rs check the Rust code against:

- Mann-Whitney: U and the two-sided p-value from scipy.stats.mannwhitneyu (asymptotic method,
  continuity correction; its tie correction), and the shift and its confidence interval found the
  way Kayenta (after R's wilcox.test) defines them: where the continuity-corrected z of
  `canary - d` against stable crosses 0 and the ±quantile. Here that crossing is found exactly, by
  evaluating the step function between every pair of consecutive pairwise differences (ranks by
  scipy.stats.rankdata, quantiles by scipy.stats.norm); the Rust code bisects.
- The rate test's log e-values: the same mixture (scipy.special.betaln, logsumexp) divided by a
  profile likelihood maximised numerically (scipy.optimize.minimize_scalar), where the Rust code
  solves the constrained maximum in closed form.

Run it from anywhere: scripts/stats-reference.py. It installs SciPy into a virtual environment
under target/ the first time (and reuses it after), then runs itself there.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

SCIPY = "1.17.1"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "stats-reference-venv"
OUT = ROOT / "src" / "decision" / "sequential" / "reference.json"


def ensure_scipy():
    """Re-run inside target/stats-reference-venv, creating it (with SciPy) when needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        venv.create(VENV, with_pip=True)
    check = subprocess.run(
        [python, "-c", f"import scipy, sys; sys.exit(scipy.__version__ != '{SCIPY}')"],
        capture_output=True,
    )
    if check.returncode != 0:
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", f"scipy=={SCIPY}"], check=True
        )
    os.execv(python, [str(python), __file__, *sys.argv[1:]])


def corrected_z(canary, stable, d, np, rankdata):
    """Kayenta's / R's continuity-corrected z of canary - d against stable (tie-corrected)."""
    n, m = len(canary), len(stable)
    joined = np.concatenate([np.asarray(canary) - d, stable])
    ranks = rankdata(joined)
    centred = ranks[:n].sum() - n * (n + 1) / 2 - n * m / 2
    _, counts = np.unique(joined, return_counts=True)
    ties = float(((counts**3) - counts).sum())
    total = n + m
    sigma = np.sqrt(n * m / 12 * ((total + 1) - ties / (total * (total - 1))))
    return (centred - 0.5 * np.sign(centred)) / sigma


def crossing(canary, stable, quantile, np, rankdata):
    """Where the corrected z crosses `quantile`: the midpoint between the last difference where
    it is still above and the first where it is below, clamped to [lo, hi] as Kayenta does."""
    lo = min(canary) - max(stable)
    hi = max(canary) - min(stable)
    f = lambda d: corrected_z(canary, stable, d, np, rankdata) - quantile
    if f(lo) <= 0:
        return lo
    if f(hi) >= 0:
        return hi
    diffs = np.unique(np.subtract.outer(np.asarray(canary), np.asarray(stable)).ravel())
    # The step function is constant between consecutive differences: one value per gap.
    edges = np.concatenate([[diffs[0] - 1.0], diffs, [diffs[-1] + 1.0]])
    values = [f((a + b) / 2) for a, b in zip(edges[:-1], edges[1:])]
    last_above = max(edges[i + 1] for i, v in enumerate(values) if v > 0)
    first_below = min(edges[i] for i, v in enumerate(values) if v < 0)
    return (min(last_above, hi) + max(first_below, lo)) / 2


def mann_whitney_cases(np, stats):
    rng = np.random.default_rng(20240611)
    cases = [
        ("small, no ties", [1.1, 2.3, 3.7, 4.2, 5.9, 9.4], [0.4, 1.5, 2.2, 2.6, 3.1]),
        ("identical", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
        ("heavy ties", [1, 1, 2, 2, 2, 3, 3, 4], [1, 1, 1, 2, 2, 3]),
    ]
    shapes = [
        ("lognormal, canary shifted +20%", 40, 60, 0.2, 0.0),
        ("lognormal, same distribution", 50, 50, 0.0, 0.0),
        ("lognormal, canary wider (variance up)", 80, 80, 0.0, 0.8),
        ("lognormal rounded to ms (ties), shifted", 120, 90, 0.1, 0.0),
    ]
    for label, n, m, shift, spread in shapes:
        canary = np.exp(rng.normal(-2.0 + shift, 0.4 + spread, n))
        stable = np.exp(rng.normal(-2.0, 0.4, m))
        if "rounded" in label:
            canary, stable = np.round(canary, 3), np.round(stable, 3)
        cases.append((label, canary.tolist(), stable.tolist()))
    out = []
    for label, canary, stable in cases:
        for confidence in (0.98, 0.95):
            result = stats.mannwhitneyu(
                canary, stable, alternative="two-sided", method="asymptotic", use_continuity=True
            )
            q = stats.norm.ppf(1 - (1 - confidence) / 2)
            tied = len(set(canary) | set(stable)) == 1
            rankdata = stats.rankdata
            shift = 0.0 if tied else crossing(canary, stable, 0.0, np, rankdata)
            lower = 0.0 if tied else crossing(canary, stable, q, np, rankdata)
            upper = 0.0 if tied else crossing(canary, stable, -q, np, rankdata)
            out.append(
                {
                    "label": label,
                    "canary": [float(v) for v in canary],
                    "stable": [float(v) for v in stable],
                    "confidence": confidence,
                    "u": float(result.statistic),
                    "p_value": float(result.pvalue),
                    "shift": float(shift),
                    "interval": [float(lower), float(upper)],
                    "median_pairwise_difference": float(
                        np.median(np.subtract.outer(canary, stable))
                    ),
                }
            )
    return out


def rate_cases(np, special, optimize):
    """log e-values of the rate test, by a second route (numerical profile maximisation)."""
    shape, steps, per_decade = 2.0, 25, 4.0
    bs = shape * 10 ** (np.arange(steps) / per_decade)

    def ln_components(x, g):
        return special.betaln(shape + x, bs + g) - special.betaln(shape, bs)

    def xlny(x, y):
        return 0.0 if x == 0 else x * np.log(y)

    def loglik(xc, gc, xs, gs, pc, ps):
        return xlny(xc, pc) + xlny(gc, 1 - pc) + xlny(xs, ps) + xlny(gs, 1 - ps)

    def profile(xc, gc, xs, gs, r):
        if xc + xs == 0:
            return 0.0
        top = min(1.0, 1.0 / r)
        res = optimize.minimize_scalar(
            lambda p: -loglik(xc, gc, xs, gs, r * p, p),
            bounds=(1e-300, top * (1 - 1e-15)),
            method="bounded",
            options={"xatol": 1e-14, "maxiter": 10_000},
        )
        # The bounded search can stop short of a boundary maximum; the ends are candidates too.
        ends = [p for p in (top,) if (gs == 0 or p < 1) and (gc == 0 or r * p < 1)]
        return max([-res.fun] + [loglik(xc, gc, xs, gs, r * p, p) for p in ends])

    cases = [
        (37, 1204, 38, 4810, 0.2),
        (2, 40, 10, 1000, 0.2),
        (1000, 100_000, 1000, 100_000, 0.2),
        (250, 10_000, 100, 10_000, 0.0),
        (0, 5000, 3, 5000, 0.0),
        (5, 100, 0, 100, 0.5),
        (3000, 6000, 2500, 6000, 0.2),
        (37.5, 1204.2, 38.0, 4810.0, 0.2),
        (1.2e8, 1e10, 1e8, 1e10, 0.1),
        (5e9, 5e11, 5e9, 5e11, 0.01),
    ]
    out = []
    for xc, nc, xs, ns, margin in cases:
        gc, gs, k = nc - xc, ns - xs, 1.0 + margin
        mixture = special.logsumexp(ln_components(xc, gc) + ln_components(xs, gs)) - np.log(steps)
        best = loglik(xc, gc, xs, gs, xc / nc, xs / ns)
        at_k = profile(xc, gc, xs, gs, k)
        above = xc * ns > k * xs * nc
        below = xc * ns < k * xs * nc
        out.append(
            {
                "canary": [xc, nc],
                "stable": [xs, ns],
                "margin": margin,
                "log_e_fail": float(mixture - (at_k if above else best)),
                "log_e_pass": float(mixture - (at_k if below else best)),
            }
        )
    return out


def main():
    ensure_scipy()
    import numpy as np
    import scipy
    from scipy import optimize, special, stats

    reference = {
        "generated_by": "scripts/stats-reference.py",
        "python": sys.version.split()[0],
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "mann_whitney": mann_whitney_cases(np, stats),
        "rates": rate_cases(np, special, optimize),
    }
    OUT.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} (Python {reference['python']}, SciPy {scipy.__version__})")


if __name__ == "__main__":
    main()
