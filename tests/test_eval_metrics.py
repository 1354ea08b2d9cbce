"""eval/metrics.py: pass@k against hand-computed values."""
from math import comb

import pytest

from eval.metrics import pass_at_k, summarize, markdown_table


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)              # c/n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)       # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)    # 1 - C(7,5)/C(10,5)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(3, 3, 2) == 1.0
    assert pass_at_k(4, 1, 4) == 1.0                             # n - c < k
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - comb(187, 100) / comb(200, 100))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 5)


def test_summary_averages_tasks_and_counts_skips():
    V = lambda t, tid, ok, st=None: dict(task=t, task_id=tid, passed=ok, status=st or ("pass" if ok else "fail"))
    vs = [V("a", "1", True), V("a", "1", False), V("a", "2", False), V("a", "2", False),
          V("a", "3", None, "skipped"), V("a", "3", None, "skipped")]
    s = summarize(vs, ks=(1, 2, 10))["a"]
    assert s["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert s["pass@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert "pass@10" not in s                                    # needs 10 samples per task
    assert s["tasks"] == 2 and s["skipped"] == 1 and s["skipped_ids"] == ["3"]
    md = markdown_table({"a": s})
    assert "| a | 2 | 4 | 25.0 | 50.0 | 1 |" in md
