"""eval/metrics.py: pass@k against hand-computed values; the headline's denominator and label."""
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


V = lambda t, tid, ok, st=None, **kw: dict(task=t, task_id=tid, passed=ok, status=st or ("pass" if ok else "fail"), **kw)


def test_summary_averages_tasks_and_counts_skips_as_failures():
    vs = [V("a", "1", True), V("a", "1", False), V("a", "2", False), V("a", "2", False),
          V("a", "3", None, "skipped", reason="missing modules: zz"), V("a", "3", None, "skipped", reason="missing modules: zz")]
    s = summarize(vs, ks=(1, 2, 10))["a"]
    assert s["pass@1"] == pytest.approx((0.5 + 0.0 + 0.0) / 3)   # the skipped task is a failure
    assert s["pass@2"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert s["scored_pass@1"] == pytest.approx(0.25)             # over the two that ran: a diagnostic
    assert "pass@10" not in s                                    # needs 10 samples per task
    assert s["tasks"] == 3 and s["scored"] == 2 and s["skipped"] == 1 and s["skipped_ids"] == ["3"]
    assert s["skip_reasons"] == {"missing modules: zz": 1} and s["label"] == "a (3 tasks)"
    md = markdown_table({"a": s})
    assert "| a | 3 | 2 | 4 | 16.7 | 33.3 | 1 |" in md
    assert "the 1 not run counted as failures: 1 skipped for missing modules (tasks per module: zz 1)" in md


def test_bigcodebench_headline_is_over_the_stated_set():
    """1,140 stated, 5 ran (3 pass), 2 skipped for a missing module, the rest without a verdict:
    pass@1 is 3/1140, never 3/5; the label names the full set."""
    ids = [f"BigCodeBench/{i}" for i in range(1140)]
    vs = [V("bigcodebench", ids[i], i < 3) for i in range(5)]
    vs += [V("bigcodebench", ids[5], None, "skipped", reason="missing modules: tensorflow"),
           V("bigcodebench", ids[6], None, "skipped", reason="missing modules: keras, tensorflow")]
    s = summarize(vs, ks=(1,), task_sets={"bigcodebench": dict(ids=ids, full=1140, subset=None)})["bigcodebench"]
    assert s["pass@1"] == pytest.approx(3 / 1140) and s["scored_pass@1"] == pytest.approx(3 / 5)
    assert (s["tasks"], s["scored"], s["skipped"], s["missing"]) == (1140, 5, 2, 1133)
    assert s["skip_reasons"] == {"missing modules: tensorflow": 1, "missing modules: keras, tensorflow": 1}
    assert s["skip_modules"] == {"tensorflow": 2, "keras": 1}
    assert s["label"] == "BigCodeBench (1,140 tasks)"
    md = markdown_table({"bigcodebench": s})
    assert "| bigcodebench | 1140 | 5 | 5 | 0.3 | 2 |" in md      # 3/1140 = 0.26%
    assert "(tasks per module: tensorflow 2, keras 1)" in md
    assert "1133 without a sample" in md and "over the 5 that ran: 60.0" in md


def test_subset_is_labelled_never_the_full_set():
    ids = [f"BigCodeBench/{i}" for i in (1, 2, 4, 7)]
    vs = [V("bigcodebench", t, t.endswith("1")) for t in ids]
    sets = {"bigcodebench": dict(ids=ids, full=1140, subset="stdlib-only, first 4")}
    s = summarize(vs, ks=(1,), task_sets=sets)["bigcodebench"]
    assert s["pass@1"] == pytest.approx(1 / 4) and s["tasks"] == 4 and s["full"] == 1140
    assert s["label"] == "BigCodeBench (subset: 4 of 1,140 tasks, stdlib-only, first 4)"
    assert "BigCodeBench (1,140 tasks)" not in markdown_table({"bigcodebench": s})
    # the whole set under a name given as a subset of itself is still a subset only if it says so
    whole = summarize(vs, ks=(1,), task_sets={"bigcodebench": dict(ids=ids, full=4, subset=None)})["bigcodebench"]
    assert whole["label"] == "BigCodeBench (4 tasks)"
    # verdicts outside the stated set do not count
    out = summarize(vs + [V("bigcodebench", "BigCodeBench/9", True)], ks=(1,), task_sets=sets)["bigcodebench"]
    assert out["pass@1"] == pytest.approx(1 / 4) and out["tasks"] == 4
