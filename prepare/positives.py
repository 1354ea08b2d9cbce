"""
The annotator's training data: positives from files, or a stand-in built from the corpus, and
random corpus documents as negatives (annotate.py train reads these).

    for text, group in read_positive_file("hqcode.jsonl"): ...     # hqcode / Magicoder / StarCoder2-Instruct
    pos = standin_positives(read_docs("D/p1/decontaminate"), limit)  # offline stand-in, see below
    neg = sample_docs("D/p1/decontaminate", n, seed)                  # n uniformly random documents

Offline positives. hqcode, Magicoder-OSS-Instruct and StarCoder2-Instruct cannot be downloaded
here. The STAND-IN is built from the training corpus itself: top-level Python functions that carry
a docstring and are self-contained (every free name is a builtin, a parameter, a local, one of the
module's imports, or one of its short helpers that needs nothing else; the imports and helpers used
are then prepended), preferring ones with doctest examples, which become asserts after the
function. That imitates what the benchmarks look like (a documented function, examples, tests). It
is NOT the paper's positive set, and no benchmark data is ever used for training.

Memory: sample_docs holds the n sampled documents (a heap), standin_positives the positives it keeps.
"""
import ast
import builtins
import gzip
import hashlib
import heapq
import json
from pathlib import Path

from formats import read_docs



def _record_text(rec, where):
    """The text of one positive record, whatever the dataset's field layout."""
    if "problem" in rec and "solution" in rec:          # Magicoder-OSS-Instruct-75K
        return f"{rec['problem']}\n\n{rec['solution']}"
    if "instruction" in rec and "response" in rec:      # StarCoder2-Instruct (self-oss-instruct)
        return f"{rec['instruction']}\n\n{rec['response']}"
    for key in ("content", "code", "text", "solution", "response"):  # hqcode and plain code files
        if isinstance(rec.get(key), str):
            return rec[key]
    raise SystemExit(f"annotate: {where}: record has none of the fields problem/solution, instruction/response, "
                     f"content, code, text (keys: {sorted(rec)[:8]})")


def read_positive_file(path):
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"annotate: positives file {path} not found")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit(f"annotate: reading {path} needs pyarrow (pip install pyarrow)") from None
        recs = pq.read_table(path).to_pylist()
    else:
        opener = gzip.open if path.name.endswith(".gz") else open
        recs = []
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        recs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise SystemExit(f"annotate: {path}:{lineno}: not JSON ({e.msg})") from None
    return [(_record_text(r, path), f"{path.name}:{i}") for i, r in enumerate(recs)]


_BUILTINS = set(dir(builtins))


def _free_names(node) -> set:
    """Names a top-level function or statement reads but does not bind itself."""
    bound, loaded = set(), set()
    if isinstance(node, ast.FunctionDef):
        a = node.args
        bound |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {node.name}
        bound |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(sub.name)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            bound |= {(al.asname or al.name).split(".")[0] for al in sub.names}
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            bound.add(sub.name)
    return loaded - bound - _BUILTINS


def module_helpers(tree, lines, imports) -> dict:
    """name -> (source, imports it needs) for the short top-level helpers of a module (constants and
    undecorated functions of at most 30 lines) that need nothing but imports and builtins. A function
    that calls one of them is still self-contained once the helper's source is put in front of it."""
    helpers = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.decorator_list:
            names = [node.name]
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names = [t.id for t in node.targets]
        else:
            continue
        if node.end_lineno - node.lineno + 1 > 30:
            continue
        free = _free_names(node) - set(names)
        if free <= set(imports):
            src = "".join(lines[node.lineno - 1:node.end_lineno])
            for n in names:
                helpers[n] = (src, free)
    return helpers


def _function_positive(node, lines, imports, helpers=None):
    """A self-contained documented top-level function as a positive text, or None. "Self-contained"
    allows the module's own short helpers (see module_helpers): their source goes in front."""
    doc = ast.get_docstring(node)
    if not doc or node.decorator_list or node.name.startswith("_"):
        return None
    if not 4 <= node.end_lineno - node.lineno + 1 <= 80:
        return None
    helpers = helpers or {}
    free = _free_names(node)
    if not free <= set(imports) | set(helpers):
        return None  # uses other module globals: not self-contained
    needed = {n for n in free if n not in imports}
    defs = sorted({helpers[n][0] for n in needed}, key=lambda src: lines.index(src.splitlines(True)[0]))
    imported = (free - needed) | {m for n in needed for m in helpers[n][1]}
    code = "".join(lines[node.lineno - 1:node.end_lineno])
    header = "".join(sorted({imports[n] for n in imported}))
    code = (header + "\n\n" if header else "") + ("".join(defs) + "\n\n" if defs else "") + code
    # doctest examples -> asserts after the function, the shape of HumanEval/MBPP tests
    asserts, dl = [], doc.splitlines()
    for i, line in enumerate(dl[:-1]):
        s, nxt = line.strip(), dl[i + 1].strip()
        if s.startswith(">>> ") and nxt and not nxt.startswith((">>>", "...", "Traceback")):
            asserts.append(f"assert ({s[4:]}) == {nxt}\n")
    tests = "".join(asserts)
    summary = " ".join(doc.strip().split("\n\n")[0].split(">>>")[0].split())
    return code, tests, summary, node.name


def standin_positives(docs, limit):
    """The offline stand-in for hqcode + instruction data (see the module docstring): a stable
    random 3/4 of the functions as code files (hqcode's part), 1/4 as an instruction and its
    answer (Magicoder/StarCoder2-Instruct's part, as in the paper's 220k + 80k mix)."""
    with_examples, plain = [], []
    for d in docs:
        if d.get("language") != "Python":
            continue
        try:
            tree = ast.parse(d["content"])
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        lines = d["content"].splitlines(keepends=True)
        imports = {}
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.end_lineno == node.lineno:
                for al in node.names:
                    imports[(al.asname or al.name).split(".")[0]] = lines[node.lineno - 1]
        helpers = module_helpers(tree, lines, imports)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                got = _function_positive(node, lines, imports, helpers)
                if got:
                    (with_examples if got[1] else plain).append((got, d["id"]))
    # the ones with examples first, each kind in a stable random order (not clustered by file);
    # dedup identical functions (vendored copies)
    out, seen = [], set()
    rand = lambda p: hash01(p[0][0], 0)  # noqa: E731
    for (code, tests, summary, name), group in sorted(with_examples, key=rand) + sorted(plain, key=rand):
        h = hashlib.sha1(code.encode("utf-8", "surrogatepass")).digest()
        if h in seen:
            continue
        seen.add(h)
        if summary and hash01(code, 1) < 0.25:
            text = (f"Write a Python function `{name}`: {summary}\n\n```python\n{code.rstrip()}\n```\n"
                    + (f"\nTests:\n```python\n{tests}```\n" if tests else ""))
        else:
            text = code.rstrip() + "\n" + ("\n\n" + tests if tests else "")
        out.append((text, group))
        if len(out) >= limit:
            break
    return out


def hash01(s, seed):
    """A stable pseudo-random number in [0, 1) for a string (same on every machine/run)."""
    h = hashlib.blake2b(f"{seed}:{s}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def sample_docs(docs_path, n, seed, exclude=()):
    """n random documents (the n smallest stable hashes of their ids), reading the corpus once."""
    exclude = set(exclude)
    heap = []  # max-heap by hash of the n smallest so far: (-hash, id, doc)
    for d in read_docs(docs_path):
        if d["id"] in exclude:
            continue
        h = hash01(d["id"], seed)
        if len(heap) < n:
            heapq.heappush(heap, (-h, d["id"], d))
        elif -heap[0][0] > h:
            heapq.heapreplace(heap, (-h, d["id"], d))
    return [d for _, _, d in sorted(heap, key=lambda x: (-x[0], x[1]))]
