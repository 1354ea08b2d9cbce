"""
The annotator's training data: positives from files, or a stand-in built from the corpus, and
random corpus documents as negatives (annotate.py train reads these).

    for text, group in read_positive_file("hqcode.jsonl", stats): ...  # hqcode / Magicoder / StarCoder2-Instruct
    pos = standin_positives(read_docs("D/p1/decontaminate"))          # offline stand-in, see below
    neg = sample_docs("D/p1/decontaminate", n, seed)                  # n uniformly random documents

Offline positives. hqcode, Magicoder-OSS-Instruct and StarCoder2-Instruct cannot be downloaded
here. The STAND-IN is built from the training corpus itself: top-level Python functions that carry
a docstring and are self-contained (every free name is a builtin, a parameter, a local, one of the
module's imports, or one of its short helpers that needs nothing else; the imports and helpers used
are then prepended), preferring ones with doctest examples, which become asserts after the
function. That imitates what the benchmarks look like (a documented function, examples, tests). It
is NOT the paper's positive set, and no benchmark data is ever used for training.

Bad records (a JSON string or null line, invalid UTF-8, a null or missing field) print one line
naming file, line and problem, are counted under their reason, and the rest are used.

Memory: read_positive_file streams (one record at a time); sample_docs holds the n sampled documents (a heap), standin_positives the positives it keeps.
"""
import ast
import builtins
import gzip
import hashlib
import heapq
import json
import sys
from pathlib import Path

from formats import read_docs



# the field layouts a positive record may have, tried in this order: (fields joined by a blank line)
LAYOUTS = [("problem", "solution"),        # Magicoder-OSS-Instruct-75K
           ("instruction", "response"),    # StarCoder2-Instruct (self-oss-instruct)
           ("content",), ("code",), ("text",)]  # hqcode and plain code files


def record_text(rec):
    """(text, None) for one positive record, or (None, reason) naming why it cannot be used."""
    if not isinstance(rec, dict):
        return None, f"not a JSON object ({type(rec).__name__})"
    for keys in LAYOUTS:
        if keys[0] in rec:
            bad = [k for k in keys if not isinstance(rec.get(k), str)]
            if bad:  # why: str(None) would train the head on the text "None"
                got = "missing" if bad[0] not in rec else "null" if rec[bad[0]] is None else type(rec[bad[0]]).__name__
                return None, f"field {bad[0]} is {got}, not text"
            text = "\n\n".join(rec[k] for k in keys)
            return (text, None) if text.strip() else (None, "empty text")
    return None, f"none of the fields {'/'.join(k[0] for k in LAYOUTS)} (keys: {sorted(rec)[:8]})"


def _jsonl_records(path):
    """(line number, record or None, problem or None) for each non-blank line of a JSONL(.gz) file.
    Lines are decoded one by one, so one Latin-1 line does not lose the file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if lineno == 1 and raw.lstrip().startswith(b"["):
                raise SystemExit(f"positives: {path}:1: a JSON array, not JSON Lines (one object per line); "
                                 f"convert it, e.g. jq -c '.[]' {path.name}")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, None, f"invalid UTF-8 (byte {e.start}: Latin-1?)"
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as e:
                yield lineno, None, f"not JSON ({e.msg})"


def _parquet_records(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(f"positives: reading {path} needs pyarrow (Parquet positives, e.g. StarCoder2-Instruct): "
                         f"pip install pyarrow") from None
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):  # streamed, not the whole table
        for rec in batch.to_pylist():
            row += 1
            yield row, rec, None


def read_positive_file(path, stats=None):
    """Yield (text, group) for each usable record of a positives file (JSONL, JSONL.gz or Parquet).
    A bad record prints one line (file, line, problem) to stderr and is counted in
    stats["dropped"][reason]; stats["given"] counts records, stats["used"] the ones yielded."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"positives: {path} not found")
    stats = {} if stats is None else stats
    stats.setdefault("given", 0)
    stats.setdefault("used", 0)
    dropped = stats.setdefault("dropped", {})
    records = _parquet_records(path) if path.suffix == ".parquet" else _jsonl_records(path)
    for lineno, rec, problem in records:
        stats["given"] += 1
        text = None
        if problem is None:
            text, problem = record_text(rec)
        if problem is not None:
            reason = problem.split(" (")[0]
            dropped[reason] = dropped.get(reason, 0) + 1
            print(f"positives: {path}:{lineno}: {problem}: skipped", file=sys.stderr)
            continue
        stats["used"] += 1
        yield text, f"{path.name}:{lineno}"


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


# stand-in positive sets, one per annotator of the paper's Table 4 that has an offline analogue:
# kind -> the share of functions written as an instruction and its answer (the rest as code files)
STANDIN_KINDS = {"hqins": 0.25,  # hqcode + instructions (ANN-HQINS, adopted): the paper's 220k + 80k mix
                 "hq": 0.0,      # code files only (ANN-HQ)
                 "ins": 1.0}     # instructions only (ours; the paper's ANN-INS adds LLM-rated files instead)


def standin_positives(docs, limit=None, kind="hqins"):
    """The offline stand-in for hqcode + instruction data (see the module docstring): for the default
    kind "hqins", a stable random 3/4 of the functions as code files (hqcode's part), 1/4 as an
    instruction and its answer (Magicoder/StarCoder2-Instruct's part, as in the paper's 220k + 80k
    mix). STANDIN_KINDS has the other annotators' sets."""
    if kind not in STANDIN_KINDS:
        raise SystemExit(f"positives: unknown stand-in kind {kind!r}; known: {', '.join(STANDIN_KINDS)}")
    share = STANDIN_KINDS[kind]
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
        if share == 1.0 and not summary:
            continue  # an instruction needs the docstring's summary
        if summary and hash01(code, 1) < share:
            text = (f"Write a Python function `{name}`: {summary}\n\n```python\n{code.rstrip()}\n```\n"
                    + (f"\nTests:\n```python\n{tests}```\n" if tests else ""))
        else:
            text = code.rstrip() + "\n" + ("\n\n" + tests if tests else "")
        out.append((text, group))
        if limit is not None and len(out) >= limit:
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
