"""The README's main job, shortened (--quick): every stage of the recipe runs for real, in order,
on this machine's own code, and leaves its output; a rerun resumes (skips every finished stage)."""
import json
import subprocess
import sys

from conftest import ROOT

STAGES = ["phase1_data", "phase1_train", "annotator", "phase2_data", "phase2_train",
          "synthesis", "phase3_data", "phase3_train", "eval"]


def test_speedrun_quick_end_to_end(tmp_path):
    out = tmp_path / "speedrun"
    r = subprocess.run([sys.executable, "speedrun.py", "--quick", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    for s in STAGES:
        assert (out / ".done" / s).exists(), s
    D, R = out / "data", out / "runs"
    man1 = json.loads((D / "p1" / "shards" / "manifest.json").read_text())
    assert sum(man1["tokens_per_language"].values()) > 0
    for p in (1, 2, 3):
        assert (R / f"p{p}" / "export" / "config.json").exists()
        assert (R / f"p{p}" / "export" / "tokenizer.tiktoken").exists()
        log = [json.loads(line) for line in (R / f"p{p}" / "log.jsonl").read_text().splitlines()]
        assert log and all("loss" in row for row in log if "iter" in row)
        res = json.loads((R / f"eval_p{p}" / "results.json").read_text())
        assert {"humaneval", "humaneval+", "mbpp", "mbpp+"} <= set(res["summary"])
    man2 = json.loads((D / "p2" / "manifest.json").read_text())
    assert all(s.get("epochs") == 4 for s in man2["shards"] if s["split"] == "train")
    assert list((D / "scores").glob("part-*"))
    assert (D / "p3" / "synthetic.jsonl").stat().st_size > 0
    assert (D / "p3" / "manifest.json").exists()
    # synthesize's accepted-files folder survives the phase-3 mix written next to it
    assert (D / "p3" / "synthetic" / "done-00000").exists()
    assert "## Synthesis" in (out / "report.md").read_text()

    report = (out / "report.md").read_text()
    for p in (1, 2, 3):
        assert f"after phase {p}" in report
    for png in ("loss.png", "scores.png", "funnel.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resume: everything finished, so a rerun only rewrites the report
    r2 = subprocess.run([sys.executable, "speedrun.py", "--quick", "--out", str(out)], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-2000:]
    assert r2.stdout.count("done earlier, skipped") == len(STAGES)
