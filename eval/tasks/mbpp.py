"""
MBPP and MBPP+, judged as EvalPlus judges MBPP+, on the MBPP+ tasks.

  mbpp    EvalPlus's "base" verdict: differential testing on MBPP+'s base_input.
  mbpp+   base_input, then plus_input.

Data: the only MBPP+ file staged here is the 2023-11-16 pre-release (399 tasks), NOT the official
v0.2.0; we drop the 21 ids the v0.2.0 release dropped, leaving 378, and mark every record with
"version" so results say "MBPP+ (pre-release inputs)". An official v0.2.0 file (already 378 tasks)
is used as-is. The original MBPP (974 problems, with a "split" field: prompt 1-10, test 11-510,
validation 511-600, train 601-974) and sanitized MBPP are loaded for decontamination only.

Prompt: the task text and its first test as a module docstring (the layout EvalPlus adopted in
MBPP+ v0.2.0), e.g.
    \"\"\"
    Write a function to find the shared elements from the given two lists.
    assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))
    \"\"\"
followed by a newline; the model writes the whole function (and any helper or import it wants).
Inputs: MBPP+ stores tuples, sets and complex numbers as JSON lists/strings; mbpp_inputs puts back
the types the signatures expect (the task ids EvalPlus 0.3.1 restores).
Oracle: EvalPlus's comparison, plus its MBPP+ special cases: set equality for a few tasks, "found
something" (not None) for three regex tasks, and the oracles of surface_Area, digit_distance_nums,
are_equivalent and sum_div as EvalPlus has them.
"""
from eval.tasks.common import evalplus_equal

TASKS = {"mbpp": ["mbpp+"], "mbpp+": ["mbpp+"]}  # task -> the data it reads (MBPP+ for both)

# The 21 task ids that MBPP+ v0.2.0 removed from the pre-release set (399 -> 378).
MBPP_PLUS_DROPPED = {83, 115, 117, 143, 164, 229, 249, 295, 396, 400, 407, 431, 438, 442, 461, 574, 582, 595, 640, 746, 783}
MBPP_PLUS_PRERELEASE = "MBPP+ pre-release 2023-11-16, 21 ids dropped (not the official v0.2.0)"


def _split(rows, f):
    for r in rows:
        t = int(r["task_id"])
        r["split"] = "prompt" if t <= 10 else "test" if t <= 510 else "validation" if t <= 600 else "train"
    return rows


def _plus_selection(rows, f):
    if len(rows) == 399:  # the pre-release: apply the v0.2.0 selection, say so on every record
        rows = [r for r in rows if int(r["task_id"].split("/")[1]) not in MBPP_PLUS_DROPPED]
        for r in rows:
            r["version"] = MBPP_PLUS_PRERELEASE
    else:
        for r in rows:
            r.setdefault("version", "MBPP+ " + f.name)
    return rows


DATA = {
    "mbpp": dict(
        files=["mbpp.jsonl.gz", "mbpp.jsonl"],
        urls=["https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"],
        sha256=None,  # two upstream revisions circulate (see ../shared/benchmarks/README.md)
        select=_split),
    "mbpp-sanitized": dict(
        files=["sanitized-mbpp.jsonl.gz", "sanitized-mbpp.jsonl", "sanitized-mbpp.json"],
        urls=["https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json"],
        sha256=None),
    "mbpp+": dict(
        files=["MbppPlus-prerelease-20231116.jsonl.gz", "MbppPlus-v0.2.0.jsonl.gz", "MbppPlus.jsonl.gz", "MbppPlus.jsonl"],
        # the official release asset first (378 tasks, used as-is), then the pre-release in the repo
        urls=["https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus-v0.2.0.jsonl.gz",
              "https://raw.githubusercontent.com/evalplus/evalplus/767efcc368e0ef16568bba4ee2f1b005e849e8a6/MbppPlus.jsonl"],
        sha256=None,
        select=_plus_selection),
}

# MBPP: the model writes the function itself, helpers included, so no "\ndef " here
STOP = ['\n"""', "\nassert ", "\nif __name__", "\nprint(", "\n```", "\n# Test", "\n# test", "<|endoftext|>"]


def describe(task: str) -> str:
    inputs = "base inputs" if task == "mbpp" else "base + plus inputs"
    return f"EvalPlus's {'MBPP' if task == 'mbpp' else 'MBPP+'} ({inputs} of MBPP+, differential)"


def mbpp_prompt(task: dict) -> str:
    """The MBPP(+) prompt above, from an MBPP+ record (pre-release or official)."""
    p = task["prompt"].strip()
    if p.startswith('"""'):  # an official v0.2.0 record already has this layout
        return p + "\n"
    text = p.strip("'").strip()
    first = next((ln.strip() for ln in task.get("assertion", "").splitlines() if ln.strip().startswith("assert")), "")
    return f'"""\n{text}\n{first}\n"""\n'


def build_prompt(problem: dict) -> str:
    return problem["prompt"]


def _tupleize(x, depth):
    """lists -> tuples down to `depth` levels (depth 0: x itself)."""
    if depth < 0 or not isinstance(x, list):
        return x
    return tuple(_tupleize(v, depth - 1) for v in x) if depth == 0 else [_tupleize(v, depth - 1) for v in x]


def _deep_tuple(x):
    return tuple(_deep_tuple(v) for v in x) if isinstance(x, list) else x


def mbpp_inputs(task_id: str, inputs: list) -> list:
    """MBPP+ stores tuples, sets and complex numbers as JSON lists/strings; put back the types the
    task's signature expects (the task ids are those EvalPlus restores)."""
    n = int(task_id.split("/")[1])
    if not inputs:
        return []
    out = []
    for args in inputs:
        a = list(args)
        if n in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809):
            a = [tuple(v) for v in a]                                  # every argument is a tuple
        elif n in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
            a = [[tuple(v) for v in arg] for arg in a]                 # every argument: list of tuples
        elif n in (75, 413, 444, 753):
            a = [[tuple(v) for v in a[0]]] + a[1:2]                    # first: list of tuples
        elif n in (106, 750):
            a = [a[0], tuple(a[1])]
        elif n == 115:
            a = [[set(v) if isinstance(v, list) and v else {} for v in a[0]]]
        elif n == 124:
            a = [float(a[0]), complex(a[1])]
        elif n in (250, 405, 446, 617, 720, 763, 808):
            a = [tuple(a[0])] + a[1:2]
        elif n in (259, 401, 445):
            a = [tuple(tuple(v) for v in arg) for arg in a]            # tuples of tuples
        elif n == 278:
            a = [tuple(tuple(v) if isinstance(v, list) else v for v in a[0])]
        elif n == 307:
            a = [tuple(a[0]), a[1], a[2]]
        elif n == 722:
            a = [{k: tuple(v) for k, v in a[0].items()}] + a[1:]
        elif n == 252:
            a = [complex(a[0])]
        elif n in (580, 615, 791):
            a = _deep_tuple(a)
        out.append(list(a) if not isinstance(a, tuple) else a)
    return out


# EvalPlus's MBPP+ special oracles, by entry point
MBPP_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
               "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}  # the canonical returns re.Match: found or not


def make_problems(task: str, path=None) -> list[dict]:
    from eval.data import dataset_hash, load_benchmark
    rows = load_benchmark("mbpp+", path)
    dhash = dataset_hash("mbpp+", path)
    return [dict(task=task, task_id=r["task_id"], prompt=mbpp_prompt(r), entry_point=r["entry_point"],
                 canonical=r["canonical_solution"], dataset="mbpp", dhash=dhash, kind="diff",
                 base_input=mbpp_inputs(r["task_id"], r["base_input"]),
                 plus_input=mbpp_inputs(r["task_id"], r["plus_input"] or []),
                 atol=float(r["atol"] or 0), version=r.get("version", ""),
                 not_none=r["entry_point"] in MBPP_NOT_NONE,  # the child reduces such answers to `is not None`
                 groups=["base"] if task == "mbpp" else ["base", "plus"]) for r in rows]


def _surface_area(base_edge, height):  # Mbpp/581's oracle: the height is the pyramid's height
    import math
    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _digit_distance(a, b):  # Mbpp/558's oracle: pad the shorter number with zeros
    sa, sb = str(a), str(b)
    w = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(w), sb.zfill(w)))


MBPP_OWN_ORACLE = {"are_equivalent", "sum_div", "surface_Area", "digit_distance_nums"}  # see outputs_match


def equality_oracle(problem: dict) -> bool:
    ep = problem["entry_point"]
    return ep not in MBPP_NOT_NONE and ep not in MBPP_SET_EQ and ep not in MBPP_OWN_ORACLE


def outputs_match(out, exp, problem: dict, args) -> bool:
    ep, atol = problem["entry_point"], problem["atol"]
    if ep in MBPP_NOT_NONE:  # the child already reduced a non-bool answer to `is not None`
        return out == exp
    if ep in MBPP_SET_EQ:
        return set(out) == set(exp)
    if ep == "are_equivalent":
        return True
    if ep == "sum_div" and out == 0:
        return True
    if ep == "surface_Area" and isinstance(out, (int, float)) and abs(out - _surface_area(*args)) <= atol:
        return True
    if ep == "digit_distance_nums" and out == _digit_distance(*args):
        return True
    return evalplus_equal(out, exp, atol)
