"""
Turning a raw completion into the program we execute.

1. cut_at_stop: the text before the first stop string (generation may overshoot by a few tokens).
2. sanitize: keep the syntactically valid code the entry point needs. The longest prefix of lines
   that parses is kept (a completion cut by max_new_tokens ends mid-statement), then, from the
   module's top level: every import, the entry point, and the definitions it reaches by name
   (functions, classes, assignments), transitively. Everything else (test calls, prints,
   `if __name__ == "__main__":` blocks, stray prose) is dropped, in source order otherwise.
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


def sanitize(code: str, entry_point: str = None) -> str:
    """The parts of `code` the function `entry_point` needs (see the module docstring). With no
    entry point, or when it is not defined, every import and definition is kept."""
    if "```" in code:  # a chat-style answer: take the fenced block that defines the entry point
        blocks = _FENCE.findall(code)
        pick = [b for b in blocks if entry_point and re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
        if pick or blocks:
            code = (pick or blocks)[0]
    tree, lines = _longest_parsable(code)
    if tree is None:
        return code  # nothing parses: run it as is, it will fail with the real error
    body = [n for n in tree.body if not _is_main_guard(n)]
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    defs = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                                              ast.AnnAssign, ast.AugAssign, ast.If, ast.Try, ast.With))]
    defined = {}
    for n in defs:
        for name in _defines(n):
            defined.setdefault(name, []).append(n)
    has_entry = entry_point is not None and any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point for n in defs)
    if has_entry:
        keep, todo, seen = set(), [entry_point], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for n in defined.get(name, []):
                if id(n) not in keep:
                    keep.add(id(n))
                    todo.extend(_uses(n))
        kept = [n for n in body if id(n) in keep or n in imports]
    else:
        kept = [n for n in body if n in imports or isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))]
    out = []
    for n in kept:
        start = min([d.lineno for d in getattr(n, "decorator_list", [])] + [n.lineno]) - 1
        out.append("".join(lines[start:n.end_lineno]).rstrip("\n"))
    return "\n".join(out) + "\n"
