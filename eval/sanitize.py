"""
Turning a raw completion into the program we execute.

1. cut_at_stop: the text before the first stop string (generation may overshoot by a few tokens).
2. sanitize: the longest prefix of lines that parses (a completion cut by max_new_tokens ends
   mid-statement; a chat answer's fenced block first), then, from the module's top level, in source
   order: every import, function and class (prompt helpers such as HumanEval/38's encode_cyclic
   that check() calls), every top-level call except print (a memo seeded by a call, a sys.exit the
   program really makes), and every other statement (assignment, loop filling a table, if/try/with
   around a def) that touches a name the kept code uses, to a fixed point. Dropped: top-level
   asserts and prints (the model's own tests), `if __name__ == "__main__":` blocks, unused state;
   but every statement of the benchmark's own prompt is kept (its constants are the tests' too).
   Like EvalPlus, this runs once, when a sample is generated; the program is then run as written
   (a samples file's "solution" is never sanitized again).
"""
import ast
import re


def cut_at_stop(text: str, stops) -> str:
    """The text before the earliest stop string (all of it when none occurs)."""
    cut = len(text)
    for s in stops or ():
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def _longest_parsable(code: str):
    """(tree, lines) of the longest prefix of lines that parses, or (None, []) when none does."""
    lines = code.splitlines(keepends=True)
    try:
        return ast.parse(code), lines
    except (SyntaxError, ValueError):
        pass
    # drop lines from the end until it parses (a binary search would be wrong: validity is not monotone)
    for n in range(len(lines) - 1, 0, -1):
        try:
            return ast.parse("".join(lines[:n])), lines[:n]
        except (SyntaxError, ValueError):
            continue
    return None, []


def _defines(node) -> set:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in n.names)
    return names


def _uses(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_main_guard(node) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _is_print(node) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "print")


def sanitize(code: str, entry_point: str = None, prompt_lines: int = 0) -> str:
    """The program for a raw completion (see the module docstring). Called once, at generation
    time; the program is then run as written. Statements starting in the first `prompt_lines`
    lines are the benchmark's own prompt and always kept (BigCodeBench's tests read prompt-level
    constants such as LETTERS or OUTPUT_DIR that the entry point itself may not use)."""
    if "```" in code and not _parses(code):  # a chat answer: the fenced block that defines the entry point
        blocks = _FENCE.findall(code)
        pick = [b for b in blocks if entry_point and re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
        if pick or blocks:
            code = (pick or blocks)[0]
    tree, lines = _longest_parsable(code)
    if tree is None:
        return code  # nothing parses: run it as is, it will fail with the real error
    body = [n for n in tree.body if not _is_main_guard(n) and not isinstance(n, ast.Assert) and not _is_print(n)]
    # always kept: imports, every function and class (helpers the tests call, e.g. HumanEval/38's
    # encode_cyclic), and other top-level calls (a memo seeded by f(30), a sys.exit the program asks for)
    always = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.ClassDef, ast.Expr)) or n.lineno <= prompt_lines]
    keep = {id(n) for n in always}
    needed = set().union(*(_uses(n) | _defines(n) for n in always)) | ({entry_point} if entry_point else set())
    # state statements (assignments, loops filling a table, if/try/with around a def) are kept when
    # they touch a needed name; what they use becomes needed in turn (to a fixed point)
    changed = True
    while changed:
        changed = False
        for n in body:
            if id(n) not in keep and (_uses(n) | _defines(n)) & needed:
                keep.add(id(n))
                needed |= _uses(n) | _defines(n)
                changed = True
    out = []
    for n in body:
        if id(n) in keep:
            start = min([d.lineno for d in getattr(n, "decorator_list", [])] + [n.lineno]) - 1
            out.append("".join(lines[start:n.end_lineno]).rstrip("\n"))
    return "\n".join(out) + "\n"


def sample_program(problem: dict, raw: str):
    """(completion, program) for a raw completion of build_prompt(problem): cut at the stop strings,
    joined to the prompt, sanitized. The one path every sample takes, the ground truth included."""
    from eval.tasks import build_prompt, stop_strings, program_from_completion
    completion = cut_at_stop(raw, stop_strings(problem))
    program = program_from_completion(problem, completion)
    prompt = build_prompt(problem)
    # the prompt's complete lines (when the program starts with it): its statements are always kept
    n = prompt.count("\n") if program.startswith(prompt) else 0
    return completion, sanitize(program, problem["entry_point"], prompt_lines=n)


def ground_truth_completion(problem: dict) -> str:
    """The canonical solution as a model would have written it: the text after build_prompt(problem)."""
    from eval.tasks import build_prompt
    prompt, canon = build_prompt(problem), problem["canonical"]
    return canon[len(prompt):] if canon.startswith(prompt) else canon


def ground_truth_program(problem: dict) -> str:
    return sample_program(problem, ground_truth_completion(problem))[1]
