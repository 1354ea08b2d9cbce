"""
Wrong and slow variants of the canonical solutions of HumanEval+ and MBPP+, to check that our
verdicts are EvalPlus's (python -m eval.bench --parity N, tests/test_eval_mutants.py).

    from eval.mutants import make_samples
    rows = make_samples(problems, n=2000, seed=0)   # [{task_id, sample, solution, kind, change}]

Each task gets its canonical solution as sample 0 (EvalPlus refuses a samples file that misses a
task), then variants until about `n` samples in all. A variant is the canonical program with one
change made on its AST:
  wrong    binop (+ -> -, * -> +, ...), intdiv (// -> /, / -> //), compare (< -> <=, == -> !=, in ->
           not in, ...), const (an int +-1), boolop (and <-> or), not (drop a `not`), return (None,
           float(v), int(v), round(v, 5)), call (int() -> float(), drop round()/abs()), remove (a
           statement deleted, `pass` where a body would be empty)
  slow     sleep_input (2 s per call: over the 1 s per-input floor), sleep_small (2 ms per call),
           sleep_group (0.3 s per call: under the per-input limit, over the 60 s group cap on big
           input groups), loop_n / loop_n2 (an extra O(n) / O(n^2) loop over the size of the
           arguments), infinite (a `while True` in the entry point), infinite_module (at load time)
Wrong variants may well be right (a dead statement removed, `<` vs `<=` where equality never
happens): the point is agreement with EvalPlus, not that every variant fails.
Deterministic: the same problems and seed give the same rows, each task from its own generator
(seeded by seed and task id), so a task's variants do not depend on which other tasks are there.
"""
import ast
import copy
import random

BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
         ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitOr, ast.LShift: ast.RShift,
         ast.RShift: ast.LShift}
INTDIV = {ast.FloorDiv: ast.Div, ast.Div: ast.FloorDiv}
COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
WRONG = ["binop", "intdiv", "compare", "const", "boolop", "not", "return", "call", "remove"]
# slow kinds and how often each is drawn; sleep_group and infinite_module cost a minute (the group
# cap) or the load limit per sample in both evaluators, so they are rare
SLOW = {"sleep_input": 3, "sleep_small": 3, "loop_n": 3, "loop_n2": 3, "infinite": 3, "sleep_group": 0.4,
        "infinite_module": 0.4}
P_SLOW = 0.1  # share of the variants that are slow ones


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _body_nodes(fn):
    """Nodes inside a function, its docstring and nested function headers left out."""
    body = fn.body[1:] if fn.body and _is_docstring(fn.body[0]) else fn.body
    for stmt in body:
        yield from ast.walk(stmt)


def _is_docstring(stmt):
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def sites(tree) -> list[tuple]:
    """Every place a wrong change can be made: (kind, path) where path finds the node again in a
    copy of the tree (the index of the node in ast.walk order)."""
    nodes = list(ast.walk(tree))
    index = {id(n): i for i, n in enumerate(nodes)}
    out, seen = [], set()
    for fn in _functions(tree):
        for n in _body_nodes(fn):
            if id(n) in seen:
                continue
            seen.add(id(n))
            i = index[id(n)]
            if isinstance(n, (ast.BinOp, ast.AugAssign)):
                if type(n.op) in BINOP:
                    out.append(("binop", i))
                if type(n.op) in INTDIV:
                    out.append(("intdiv", i))
            elif isinstance(n, ast.Compare) and type(n.ops[0]) in COMPARE:
                out.append(("compare", i))
            elif isinstance(n, ast.Constant) and type(n.value) is int:
                out.append(("const", i))
            elif isinstance(n, ast.BoolOp):
                out.append(("boolop", i))
            elif isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
                out.append(("not", i))
            elif isinstance(n, ast.Return) and n.value is not None:
                out.append(("return", i))
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("int", "round", "abs")
                  and len(n.args) >= 1):
                out.append(("call", i))
            if isinstance(n, ast.stmt) and not isinstance(n, (ast.FunctionDef, ast.Return, ast.Global, ast.Nonlocal)):
                out.append(("remove", i))
    return out


def _parent(tree, target):
    """(node, field, index or None) holding `target`."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                return parent, field, None
            if isinstance(value, list):
                for j, v in enumerate(value):
                    if v is target:
                        return parent, field, j
    raise ValueError("node not in tree")


def _replace(tree, old, new):
    parent, field, j = _parent(tree, old)
    if j is None:
        setattr(parent, field, new)
    else:
        getattr(parent, field)[j] = new


def _remove(tree, target):
    parent, field, j = _parent(tree, target)
    block = getattr(parent, field)
    del block[j]
    if not block and field != "orelse":  # a body cannot be empty
        block.append(ast.Pass())


def apply(tree, kind, i, rng) -> str:
    """A copy of `tree` with the change `kind` made at node `i` (ast.walk order); returns a
    description of the change (the tree is changed in place: pass a copy)."""
    n = list(ast.walk(tree))[i]
    line = getattr(n, "lineno", "?")
    if kind in ("binop", "intdiv"):
        new = (BINOP if kind == "binop" else INTDIV)[type(n.op)]
        desc = f"line {line}: {type(n.op).__name__} -> {new.__name__}"
        n.op = new()
        return desc
    if kind == "compare":
        new = COMPARE[type(n.ops[0])]
        desc = f"line {line}: {type(n.ops[0]).__name__} -> {new.__name__}"
        n.ops[0] = new()
        return desc
    if kind == "const":
        d = rng.choice((1, -1))
        desc = f"line {line}: {n.value} -> {n.value + d}"
        n.value += d
        return desc
    if kind == "boolop":
        desc = f"line {line}: {type(n.op).__name__} -> {'Or' if isinstance(n.op, ast.And) else 'And'}"
        n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
        return desc
    if kind == "not":
        _replace(tree, n, ast.Call(ast.Name("bool", ast.Load()), [n.operand], []))  # same type, opposite truth
        return f"line {line}: not x -> bool(x)"
    if kind == "return":
        how = rng.choice(("none", "float", "int", "round"))
        v = n.value
        n.value = {"none": lambda: ast.Constant(None),
                   "float": lambda: ast.Call(ast.Name("float", ast.Load()), [v], []),
                   "int": lambda: ast.Call(ast.Name("int", ast.Load()), [v], []),
                   "round": lambda: ast.Call(ast.Name("round", ast.Load()), [v, ast.Constant(5)], [])}[how]()
        return f"line {line}: return v -> return {'None' if how == 'none' else how + '(v' + (', 5)' if how == 'round' else ')')}"
    if kind == "call":
        if n.func.id == "int":
            n.func.id = "float"
            return f"line {line}: int(...) -> float(...)"
        _replace(tree, n, n.args[0])  # round(x, ...) / abs(x) -> x
        return f"line {line}: {n.func.id}(x) -> x"
    if kind == "remove":
        _remove(tree, n)
        return f"line {line}: {type(n).__name__} removed"
    raise ValueError(kind)


def slow_variant(tree, entry_point, kind) -> str:
    """Add the slow change `kind` to the entry point of `tree` (in place); returns its description."""
    fn = next((f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == entry_point),
              None)
    if fn is None:  # defined under an if/try: look anywhere
        fn = next(f for f in _functions(tree) if f.name == entry_point)
    args = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    if fn.args.vararg:
        args.append(fn.args.vararg.arg)
    size = f"len(repr(({', '.join(args)},)))"  # the size of the arguments, whatever their types
    code = {"sleep_input": "import time as _t\n_t.sleep(2.0)",
            "sleep_small": "import time as _t\n_t.sleep(0.002)",
            "sleep_group": "import time as _t\n_t.sleep(0.3)",
            "loop_n": f"for _i in range(20 * {size}):\n    pass",
            "loop_n2": f"_n = {size}\nfor _i in range(_n * _n):\n    pass",
            "infinite": "while True:\n    pass"}
    if kind == "infinite_module":
        tree.body.append(ast.parse("while True:\n    pass").body[0])
        return "while True at module level"
    at = 1 if fn.body and _is_docstring(fn.body[0]) else 0
    fn.body[at:at] = ast.parse(code[kind]).body
    return code[kind].replace("\n", "; ")


def canonical_program(problem) -> str:
    """The whole canonical program, as EvalPlus runs it (HumanEval+: prompt + solution)."""
    return problem["canonical"]


def task_variants(problem, count, seed=0) -> list[dict]:
    """`count` distinct variants of one task's canonical solution (fewer when it has fewer sites)."""
    rng = random.Random(f"{seed}/{problem['task_id']}")
    src = canonical_program(problem)
    tree = ast.parse(src)
    base = ast.dump(tree)
    by_kind = {}
    for k, i in sites(tree):
        by_kind.setdefault(k, []).append(i)
    out, seen = [], {base}
    tries = 0
    while len(out) < count and tries < 20 * count:
        tries += 1
        t = copy.deepcopy(tree)
        if rng.random() < P_SLOW:
            kind = rng.choices(list(SLOW), weights=list(SLOW.values()))[0]
            change = slow_variant(t, problem["entry_point"], kind)
        elif by_kind:
            kind = rng.choice(sorted(by_kind))  # a kind first, then a site: rare kinds get their share
            change = apply(t, kind, rng.choice(by_kind[kind]), rng)
        else:
            continue
        ast.fix_missing_locations(t)
        d = ast.dump(t)
        if d in seen:
            continue
        try:
            solution = ast.unparse(t)
            compile(solution, problem["task_id"], "exec")
        except (SyntaxError, ValueError, RecursionError):
            continue
        seen.add(d)
        out.append(dict(task_id=problem["task_id"], solution=solution, kind=kind, change=change,
                        slow=kind in SLOW))
    return out


def make_samples(problems, n=2000, seed=0) -> list[dict]:
    """About `n` samples (at least one per task): the canonical solution of each task as sample 0,
    then variants spread evenly over the tasks. Rows in EvalPlus's samples layout (task_id,
    solution) plus sample (index within the task), kind and change."""
    per_task = max(0, -(-(n - len(problems)) // max(1, len(problems))))  # ceil
    rows = []
    for p in problems:
        rows.append(dict(task_id=p["task_id"], sample=0, solution=canonical_program(p), kind="canonical",
                         change="", slow=False))
        for j, v in enumerate(task_variants(p, per_task, seed), start=1):
            rows.append(dict(v, sample=j))
    return rows
