"""prepare/positives.py: the positives-file layouts (hqcode / Magicoder / StarCoder2-Instruct)."""
import gzip
import json

from prepare.positives import read_positive_file


def test_positive_file_layouts(tmp_path):
    f = tmp_path / "pos.jsonl.gz"
    recs = [{"problem": "Sum two numbers.", "solution": "def add(a, b):\n    return a + b"},        # Magicoder
            {"instruction": "Reverse a list.", "response": "def rev(x):\n    return x[::-1]"},       # StarCoder2-Instruct
            {"code": "int main() { return 0; }", "language": "C"}]                                    # hqcode
    with gzip.open(f, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in recs))
    got = read_positive_file(f)
    assert [t for t, _ in got] == ["Sum two numbers.\n\ndef add(a, b):\n    return a + b",
                                   "Reverse a list.\n\ndef rev(x):\n    return x[::-1]", "int main() { return 0; }"]
