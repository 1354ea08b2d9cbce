"""
The paper's 18 programming languages (DESIGN.md §1) and how a file is assigned to one.

    language_of("src/app/main.rs")   -> "Rust"
    normalize_language("c-sharp")    -> "C#"   (The Stack's / GitHub's spellings -> ours)

Names here are the spelling used in every document's "language" field and in shard manifests.
"""
from pathlib import PurePath

LANGUAGES = [
    "Python", "Java", "C++", "C", "JavaScript", "PHP", "C#", "Go", "TypeScript", "SQL",
    "Ruby", "Rust", "Jupyter Notebook", "Scala", "Kotlin", "Shell", "Dart", "Swift",
]

# file extension (lower case, with the dot) -> language. ".h" is C: in The Stack and on a
# typical /usr/include most .h files are C; C++ headers mostly use .hpp/.hh/.hxx or none.
EXTENSIONS = {
    ".py": "Python", ".pyi": "Python", ".pyw": "Python",
    ".java": "Java",
    ".cpp": "C++", ".cc": "C++", ".cxx": "C++", ".c++": "C++", ".hpp": "C++", ".hh": "C++",
    ".hxx": "C++", ".h++": "C++", ".ipp": "C++", ".tcc": "C++", ".inl": "C++",
    ".c": "C", ".h": "C",
    ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".jsx": "JavaScript",
    ".php": "PHP", ".phtml": "PHP",
    ".cs": "C#",
    ".go": "Go",
    ".ts": "TypeScript", ".tsx": "TypeScript", ".mts": "TypeScript", ".cts": "TypeScript",
    ".sql": "SQL",
    ".rb": "Ruby", ".rake": "Ruby", ".gemspec": "Ruby",
    ".rs": "Rust",
    ".ipynb": "Jupyter Notebook",
    ".scala": "Scala", ".sc": "Scala",
    ".kt": "Kotlin", ".kts": "Kotlin",
    ".sh": "Shell", ".bash": "Shell", ".zsh": "Shell", ".ksh": "Shell",
    ".dart": "Dart",
    ".swift": "Swift",
}

# other spellings found in The Stack ("lang"), GitHub linguist and hand-written configs
_ALIASES = {
    "python": "Python", "py": "Python", "java": "Java",
    "c++": "C++", "cpp": "C++", "cplusplus": "C++",
    "c": "C", "javascript": "JavaScript", "js": "JavaScript", "php": "PHP",
    "c#": "C#", "c-sharp": "C#", "csharp": "C#", "cs": "C#",
    "go": "Go", "golang": "Go", "typescript": "TypeScript", "ts": "TypeScript",
    "sql": "SQL", "ruby": "Ruby", "rust": "Rust",
    "jupyter notebook": "Jupyter Notebook", "jupyter-notebook": "Jupyter Notebook",
    "jupyter-scripts-python": "Jupyter Notebook", "jupyter-structured-python": "Jupyter Notebook",
    "ipynb": "Jupyter Notebook", "notebook": "Jupyter Notebook",
    "scala": "Scala", "kotlin": "Kotlin", "shell": "Shell", "bash": "Shell", "sh": "Shell",
    "dart": "Dart", "swift": "Swift",
}


def normalize_language(name) -> str | None:
    """A language name in any common spelling -> one of LANGUAGES, or None if not one of the 18."""
    if not name:
        return None
    if name in LANGUAGES:
        return name
    return _ALIASES.get(str(name).strip().lower())


def language_of(path) -> str | None:
    """Language of a file from its extension (None: not one of the 18). Extension-less files
    under a c++ include directory (/usr/include/c++/13/vector) count as C++."""
    p = PurePath(path)
    lang = EXTENSIONS.get(p.suffix.lower())
    if lang is None and not p.suffix and "c++" in p.parts[:-1]:
        return "C++"
    return lang
