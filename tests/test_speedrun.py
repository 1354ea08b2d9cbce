"""The README's main job, shortened (--quick): every stage of the recipe runs for real, in order,
on this machine's own code, and leaves its output; a rerun resumes (skips every finished stage).
Then the ablations (--ablations, one seed to keep CI short) on the same phase 1: every table."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

STAGES = ["phase1_data", "phase1_train", "annotator", "phase2_data", "phase2_train", "phase2_random_train",
          "synthesis", "phase3_data", "phase3_train", "eval", "bits_per_byte"]
ARMS = ("p1", "p2_random", "p2", "p3")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speedrun") / "speedrun"
    r = subprocess.run([sys.executable, "speedrun.py", "--quick", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def test_speedrun_quick_end_to_end(quick_run):
    out = quick_run

    for s in STAGES:
        assert (out / ".done" / s).exists(), s
    D, R = out / "data", out / "runs"
    man1 = json.loads((D / "p1" / "shards" / "manifest.json").read_text())
    assert sum(man1["tokens_per_language"].values()) > 0
    for p in ARMS:
        assert (R / p / "export" / "config.json").exists()
        assert (R / p / "export" / "tokenizer.tiktoken").exists()
        log = [json.loads(line) for line in (R / p / "log.jsonl").read_text().splitlines()]
        assert log and all("loss" in row for row in log if "iter" in row)
        res = json.loads((R / f"eval_{p}" / "results.json").read_text())
        assert {"humaneval", "humaneval+", "mbpp", "mbpp+"} <= set(res["summary"])
        loss = json.loads((R / f"loss_{p}.json").read_text())
        assert {"humaneval+", "mbpp+"} <= set(loss["aligned"]) and loss["heldout"]["all"]["bpb"] > 0
        assert loss["aligned"]["humaneval+"]["subset"] == "first 8 of 164"  # --quick: labelled a subset
    # the control arm: same per-language tokens and repetition as the annotator's arm, other documents
    man2 = json.loads((D / "p2arms" / "annotator" / "manifest.json").read_text())
    man2r = json.loads((D / "p2arms" / "random" / "manifest.json").read_text())
    assert all(s.get("epochs") == 4 for m in (man2, man2r) for s in m["shards"] if s["split"] == "train")
    a, r = man2["phase2"], man2r["phase2"]
    assert r["reference_arm"] == "annotator" and a["budget_tokens"] == r["budget_tokens"]
    assert set(a["selected_tokens_per_language"]) == set(r["selected_tokens_per_language"])  # per language:
    # within one document of the annotator arm's tokens (prepare/phase2's own tests check that bound)
    assert a["selected_dir"] != r["selected_dir"] and r["select"] == "random"
    assert list((D / "scores" / "annotator").glob("part-*"))
    assert (D / "p3" / "synthetic.jsonl").stat().st_size > 0
    assert (D / "p3" / "manifest.json").exists()
    # synthesize's accepted-files folder survives the phase-3 mix written next to it
    assert (D / "p3" / "synthetic" / "done-00000").exists()
    assert "## Synthesis" in (out / "report.md").read_text()

    report = (out / "report.md").read_text()
    for p in (1, 2, 3):
        assert f"after phase {p}" in report
    assert "random tokens (control)" in report and "## Aligned bits per byte" in report
    assert report.count("- paper: ") == 3
    for png in ("loss.png", "scores.png", "funnel.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resume: everything finished, so a rerun only rewrites the report
    r2 = subprocess.run([sys.executable, "speedrun.py", "--quick", "--out", str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-2000:]
    assert r2.stdout.count("done earlier, skipped") == len(STAGES)


def test_ablations_produce_every_table(quick_run):
    out = quick_run
    r = subprocess.run([sys.executable, "speedrun.py", "--quick", "--out", str(out), "--ablations", "--seeds", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = (out / "ablations.md").read_text()
    for t in ("Table 3", "Table 4", "Table 5", "Table 6"):
        assert t in report
    for arm in ("by repository", "random", "annotator", "annotator HQ", "annotator INS", "constant MIN_LR", "1x", "5x"):
        assert f"| {arm} |" in report, arm
    assert report.count("- paper: ") == 10  # one line per finding, Fig. 2's included
    res = json.loads((out / "ablations" / "results.json").read_text())
    aucs = res.pop("fig2_roc_auc")
    assert len(res) == 15 and all(len(v) >= 1 for v in res.values())
    # Fig. 2: one ROC-AUC per annotator, each from its own trained head
    assert set(aucs) == {"annotator", "annotator HQ", "annotator INS"} and all(0 <= v <= 1 for v in aucs.values())
    assert "## Fig. 2" in report
    # the annotators' arms hold the same tokens per language as each other (one selection run, 4x)
    sel = json.loads((out / "ablations" / "data" / "select-4x-3ann-s1337" / "arms.json").read_text())
    assert {"annotator", "annotator-hq", "annotator-ins", "random"} <= set(sel)
    assert (out / "ablations" / "ablations.png").read_bytes()[:4] == b"\x89PNG"
