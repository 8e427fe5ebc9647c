"""Tests of the reproduction's intervals and paired comparisons."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from l2reg.reproduction import stats


def test_interval_is_the_student_t_interval_with_ddof_1():
    values = [0.90, 0.92, 0.95, 0.91, 0.97]
    result = stats.interval(values)
    std = np.std(values, ddof=1)
    half = scipy_stats.t.ppf(0.975, 4) * std / np.sqrt(5)
    assert result["n"] == 5 and result["missing"] == 0
    assert result["std"] == pytest.approx(std, rel=1e-12)
    assert result["low"] == pytest.approx(np.mean(values) - half, rel=1e-12)
    assert result["high"] == pytest.approx(np.mean(values) + half, rel=1e-12)


def test_interval_leaves_out_and_counts_missing_values():
    result = stats.interval([1.0, float("nan"), 3.0])
    assert result["mean"] == 2.0 and result["n"] == 2 and result["missing"] == 1
    assert result["values"] == [1.0, None, 3.0]
    single = stats.interval([0.5])
    assert single["mean"] == 0.5 and single["low"] is None and single["std"] is None
    assert stats.interval([])["mean"] is None


def test_paired_difference_and_its_t_test():
    a = np.array([0.91, 0.93, 0.90, 0.95, 0.92])
    b = a - np.array([0.01, 0.02, 0.015, 0.012, 0.018])
    result = stats.paired(a, b)
    assert result["mean"] == pytest.approx(0.015, abs=1e-12)
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert result["low"] > 0  # every replica gains: the interval excludes 0
    # Equal differences have no spread: no t-test.
    assert stats.paired([1.0, 2.0], [0.0, 1.0])["p_value"] is None
    with pytest.raises(ValueError, match="1-D of one shape"):
        stats.paired([1.0, 2.0], [1.0])


def test_slope_interval_and_text():
    low, high = stats.slope_interval(-1.0, 0.1, 10)
    assert high - (-1.0) == pytest.approx(scipy_stats.t.ppf(0.975, 10) * 0.1)
    assert low == pytest.approx(-2.0 - high)
    assert stats.slope_interval(-1.0, float("nan"), 0) is None
    assert stats.text(stats.interval([0.9, 0.92, 0.94]), scale=100) == "92.0 [87.0, 97.0]"
    assert stats.text(None) == "—"


def test_replicas_pair_every_draw_with_every_seed():
    assert stats.replicas(2, 3) == [stats.Replica(d, s) for d in range(2) for s in range(3)]
