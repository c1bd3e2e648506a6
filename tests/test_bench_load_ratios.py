"""bench/load.py: each target's ratio is against the sign-in page measured just before it, so a machine that slows
down during a run moves both sides of the ratio alike."""

from bench.load import summarise


def figures(rps, p95=10.0, errors=0):
    return {
        "requests": int(rps * 10),
        "rps": rps,
        "p50_ms": p95 / 2,
        "p95_ms": p95,
        "p99_ms": p95 * 2,
        "errors": errors,
    }


def test_a_target_is_compared_with_the_baseline_measured_just_before_it_not_with_the_first():
    measured = [
        (1, "API patient list", "/api/v1/patients/", figures(300), figures(1000)),
        (1, "page: patient list", "/patients/", figures(100), figures(500)),  # the machine slowed down
    ]
    rows = {row["target"]: row for row in summarise(measured)}
    assert rows["API patient list"]["ratio"] == 0.3
    assert rows["page: patient list"]["ratio"] == 0.2  # against 500, not 0.1 against the first 1,000


def test_rounds_give_medians_and_every_rounds_ratio_with_the_baseline_row_first():
    measured = [
        (round_number, "API one patient", "/api/v1/patients/x/", figures(rps, p95=p95, errors=errors), figures(base))
        for round_number, rps, p95, errors, base in [(1, 400, 30, 0, 1000), (2, 300, 50, 1, 1000), (3, 450, 40, 0, 900)]
    ]
    baseline, target = summarise(measured)
    assert baseline["target"] == "baseline: sign-in page" and baseline["ratio"] == 1.0 and baseline["ratios"] == []
    assert baseline["rps"] == 1000
    assert target["ratios"] == [0.4, 0.3, 0.5] and target["ratio"] == 0.4
    assert target["rps"] == 400 and target["p95_ms"] == 40
    assert target["errors"] == 1  # errors are summed, never a median
