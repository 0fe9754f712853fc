"""The benchmark's statistic: ratios of cells that ran in the same round."""

from __future__ import annotations

from bench.report import paired


def _cell(per_round: list[float]) -> dict:
    ordered = sorted(per_round)
    return {"rps": ordered[len(ordered) // 2], "rps_all": per_round}


def test_a_round_where_the_host_slowed_down_does_not_pair_with_a_fast_one():
    # B is 1.5x A in every round; the host ran slow in round 3 for A and round 1 for B.
    a = _cell([1000.0, 1000.0, 600.0, 1000.0, 1000.0])
    b = _cell([900.0, 1500.0, 900.0, 1500.0, 1500.0])
    assert paired(b, a) == 1.5
    assert b["rps"] / a["rps"] == 1.5  # here the medians agree...
    b = _cell([900.0, 1500.0, 900.0, 900.0, 1500.0])
    a = _cell([600.0, 1000.0, 600.0, 1000.0, 1000.0])
    assert b["rps"] / a["rps"] == 0.9  # ...here they pair B's slow rounds with A's fast ones
    assert paired(b, a) == 1.5


def test_a_cell_measured_once_is_its_own_round():
    assert paired({"rps": 300.0}, {"rps": 200.0}) == 1.5
