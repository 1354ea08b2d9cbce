"""
GSM8K (test split, 1,319 problems): data only. Not an eval task here (SnowCoder is a code model);
prepare/decontaminate.py removes its questions from the training data, through eval.data.
"""
TASKS = {}

DATA = {
    "gsm8k": dict(
        files=["gsm8k-test.jsonl.gz", "test.jsonl"],
        urls=["https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl"],
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
}
