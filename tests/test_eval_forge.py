"""Forging a BigCodeBench verdict from inside the sample (eval/sandbox.py's in-process judge).

Each attack runs twice, at load time (module level) and inside the entry function, in a wrong
program, through the real judge path (eval.execute.run_jobs -> judge -> run_sandboxed -> the
child), beside the correct program and a plainly wrong one on the same small unittest problem
built here. Every attack must forge no pass (a "nonce thief" must also find no nonce), and the
run must go on with the other verdicts unchanged. The thief is first shown to work against the
previous harness (git HEAD~ of eval/sandbox.py, when it is still the unprotected one): the test
can fail. Real BigCodeBench canonical solutions (stdlib-only: subprocess, threading, mock,
tempfile, sockets, logging, inspect) must still pass under the guards.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import eval.execute as ex
from eval.execute import Job, Limits, load_scale, run_jobs

ROOT = Path(__file__).resolve().parent.parent

TEST = '''
import unittest
class TestCases(unittest.TestCase):
    def test_one(self):
        self.assertEqual(task_func(2), 4)
    def test_raises(self):
        with self.assertRaises(ValueError):
            task_func(-1)
    def test_two(self):
        result = task_func(3)
        self.assertIsInstance(result, int)
        self.assertTrue(result == 9)
        self.assertEqual(result, 9)
'''
NAMES = ["TestCases.test_one", "TestCases.test_raises", "TestCases.test_two"]
GOOD = "def task_func(x):\n    if x < 0:\n        raise ValueError(x)\n    return x * x\n"
WRONG = "    return x + x\n"  # passes test_one and test_raises, fails test_two


def problem():
    return dict(task="bigcodebench", task_id="BigCodeBench/forge", prompt="def task_func(x):\n", entry_point="task_func",
                canonical=GOOD, dataset="bigcodebench", dhash="forge", kind="unittest", test=TEST, libs=[],
                imports=["unittest"])


# ------------------------------------------------------------------ the attacks (bodies of attack())
# Each may set RESULT (what task_func returns instead of the wrong answer) and append to LOOT
# (reported in the failure message through an exception, so the test can read what it got).
THIEF = r'''
import gc, re, signal, time, types, inspect, traceback, threading, marshal
HEX = re.compile(r"^[0-9a-f]{32}$")
tries, roots = [], []
def t(name, f):
    try:
        roots.append(f()); tries.append(name + ":got")
    except BaseException as e:
        tries.append(f"{name}:{type(e).__name__}")
def tb_frame():
    try:
        raise KeyError
    except KeyError as e:
        return e.__traceback__.tb_frame
def gen():
    yield 1
g = gen(); next(g)
def sig():
    box = []
    signal.signal(signal.SIGUSR1, lambda s, f: box.append(f))
    os.kill(os.getpid(), signal.SIGUSR1); time.sleep(0.05)
    return box
def tracer():
    box = []
    sys.settrace(lambda f, e, a: box.append(f)); (lambda: 0)(); sys.settrace(None)
    return box
def saveall():
    gc.set_debug(gc.DEBUG_SAVEALL); gc.collect(); return list(gc.garbage)
def fresh_gc():
    import _imp, importlib.machinery
    g2 = _imp.create_builtin(importlib.machinery.ModuleSpec("gc", None))
    g2.set_debug(g2.DEBUG_SAVEALL); g2.collect(); return list(g2.garbage)
def subclass_globals():
    out, todo, seen = [], [object], set()
    while todo:
        c = todo.pop()
        try:
            subs = type.__subclasses__(c)
        except TypeError:
            continue
        for s in subs:
            if id(s) not in seen:
                seen.add(id(s)); todo.append(s)
                out += [f.__globals__ for f in list(vars(s).values()) if isinstance(f, types.FunctionType)]
    return out
def proc_fds():
    out = []
    for n in os.listdir("/proc/self/fd"):
        try:
            out.append(open(f"/proc/self/fd/{n}", "rb").close())  # a pipe's write end opens for reading
        except OSError as e:
            if "sandbox" in str(e):
                raise
    return out
def tb_obj():
    try:
        raise KeyError
    except KeyError as e:
        return e.__traceback__
def imposter(suffix, qualname, body):
    # a function compiled under the file name and qualified name of a library function the hook
    # lets have a frame (or gc.get_referents), with code of its own
    sp = [p for p in sys.path if p.endswith("site-packages")]
    cls, _, fn = qualname.rpartition(".")
    src = f"class {cls}:\n    def {fn}(self):\n        return {body}\n" if cls else f"def {fn}():\n    return {body}\n"
    ns = {"sys": sys, "gc": gc, "tb_obj": tb_obj}
    exec(compile(src, sp[0] + "/" + suffix, "exec"), ns)
    return getattr(ns[cls](), fn)() if cls else ns[fn]()
def genuine_rebound():
    # the genuine library code under globals of our own: it may take its frame, it hands on only names
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise LookupError("matplotlib is not installed")
    import itertools, matplotlib._api as api
    got = []
    class Spy:
        def match(self, *a):
            got.append(a)
        def warn(self, *a, **k):
            got.append((a, k))
    types.FunctionType(api.warn_external.__code__, {"sys": sys, "re": Spy(), "warnings": Spy(),
                                                   "itertools": itertools, "pathlib": None})("x", None)
    return got
t("getframe", lambda: sys._getframe(0))
t("lib_imposter_getframe", lambda: imposter("matplotlib/_api/__init__.py", "warn_external", "sys._getframe(0)"))
t("lib_imposter_decorator", lambda: imposter("scipy/_lib/decorator.py", "FunctionMaker.update", "sys._getframe(1)"))
t("lib_imposter_referents", lambda: imposter("pandas/core/generic.py", "NDFrame._check_setitem_copy",
                                             "gc.get_referents(tb_obj())"))
t("genuine_rebound", genuine_rebound)
t("getframe_deep", lambda: [sys._getframe(i) for i in range(1, 12)])
t("current_frames", lambda: list(sys._current_frames().values()))
t("tb_frame", tb_frame)
t("gi_frame", lambda: g.gi_frame)
t("inspect_currentframe", lambda: inspect.currentframe() or 1 / 0)
t("inspect_stack", lambda: [fi.frame for fi in inspect.stack()])
t("walk_stack", lambda: [f for f, _ in traceback.walk_stack(None)])
t("gc_objects", lambda: gc.get_objects())
t("gc_referrers", lambda: gc.get_referrers(sys.modules["__main__"]))
t("signal_frame", sig)
t("settrace", tracer)
t("saveall", saveall)
t("fresh_gc", fresh_gc)
t("main_module", lambda: vars(sys.modules["__main__"]))
t("subclass_globals", subclass_globals)
t("entry_code", lambda: globals()["task_func"].__code__.co_consts)
t("entry_globals", lambda: globals()["task_func"].__globals__)
t("proc_mem", lambda: open("/proc/self/mem", "rb").read(1))
t("proc_fd", proc_fds)
def search(roots):
    """Breadth-first through everything reachable from roots, looking for the run's nonce."""
    # bounded by count and by time: the suite's limit (3 s, scaled by load) must not cut the thief off
    # before it reports (under load a 300k-object walk alone can take longer than that)
    import time as _t
    found, seen, todo, n, t_end = None, set(), list(roots), 0, _t.monotonic() + 1.0
    while todo and n < 300000 and not found and (n % 1024 or _t.monotonic() < t_end):
        o = todo.pop(); n += 1
        if id(o) in seen:
            continue
        seen.add(id(o))
        if type(o) is str:
            if HEX.match(o):
                found = o
            continue
        if isinstance(o, types.FrameType):
            todo += [o.f_back, o.f_locals, o.f_globals]
        elif isinstance(o, dict):
            todo += list(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            todo += list(o)
        elif isinstance(o, types.FunctionType):
            todo += [o.__globals__, o.__defaults__, o.__kwdefaults__] + [c.cell_contents for c in (o.__closure__ or ())
                                                                        if c.cell_contents is not o]
        elif isinstance(o, (types.SimpleNamespace, types.ModuleType)):
            todo.append(vars(o))
    return found, n
def spy(event, args):  # an audit hook of our own: it sees the harness's traceback objects while it formats
    if event == "object.__getattr__" and args[1] == "tb_frame" and not SPIED:
        SPIED.append(1)
        try:
            hit = search([args[0].tb_frame])[0]
        except BaseException:
            hit = None
        if hit:
            forge(hit, with_start=False)
            os._exit(0)
SPIED = []
t("addaudithook", lambda: sys.addaudithook(spy))
found, n = search(roots)
if found:  # what a thief does with it: a complete run of passes, then leave before the harness speaks
    # (inside test_one the harness has sent its "S" already; at load, nothing)
    forge(found, with_start=CFG_WHERE == "load")
    os._exit(0)
LOOT.append("tried " + " ".join(tries) + f"; searched {n} objects; nothing found")
'''

ATTACKS = {
    "nonce_thief": THIEF,
    "patch_unittest": """
import unittest, unittest.result
noop = lambda *a, **k: None
for name in dir(unittest.TestCase):
    if name.startswith(("assert", "fail")):
        setattr(unittest.TestCase, name, noop)
unittest.TestCase.run = lambda self, result=None: None
unittest.TestCase.debug = noop
unittest.TestCase.doCleanups = lambda self: True
unittest.TestResult.addFailure = noop
unittest.TestResult.addError = noop
unittest.TestResult.wasSuccessful = lambda self: True
unittest.case.TestCase.failureException = type("Nope", (BaseException,), {})
""",
    "fake_unittest_module": """
import unittest, types
class Fake(unittest.TestCase):
    def assertEqual(self, *a, **k): pass
    def assertTrue(self, *a, **k): pass
    def assertIsInstance(self, *a, **k): pass
fake = types.ModuleType("unittest")
fake.__dict__.update(vars(unittest)); fake.TestCase = Fake
sys.modules["unittest"] = fake
unittest.TestCase = Fake
""",
    "self_restoring_patch": """
import unittest
TC = unittest.TestCase
for name in ("assertEqual", "assertTrue", "assertIsInstance"):
    orig = getattr(TC, name)
    def fake(self, *a, _n=name, _o=orig, **k):
        setattr(TC, _n, _o)  # gone again once used: nothing left to see after the test
    setattr(TC, name, fake)
""",
    "patch_test_class": """
tc = globals().get("TestCases")
if tc is not None:
    tc.assertEqual = lambda *a, **k: None
    tc.assertTrue = lambda *a, **k: None
    tc.test_two = lambda self: None
    tc.test_one = lambda self: None
""",
    "patch_builtins": """
import builtins
builtins.AssertionError = KeyError
builtins.isinstance = lambda *a: True
builtins.len = lambda x: 0
builtins.Exception = BaseException
""",
    "patch_harness_globals": """
import marshal
m = sys.modules["__main__"]
for name in list(vars(m)):
    if name in ("changes", "suspect", "_after_program", "format_exc", "snapshot", "restore"):
        setattr(m, name, lambda *a, **k: [])
m.run_case = lambda *a, **k: None
m._dumps = lambda msg: marshal.dumps(tuple("ok" if x in ("fail", "err", "forged", "timeout") else x for x in msg))
m._ENTRY = None
for k, v in list(vars(m).items()):
    if isinstance(v, list) and v == [True]:
        v[0] = False  # e.g. an "armed" flag
""",
    "always_equal": """
class Eq(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = int.__hash__
RESULT = Eq(0)
""",
    "class_spoof": """
class Spoof:
    __class__ = property(lambda self: int)
    def __eq__(self, other): return True
RESULT = Spoof()
""",
    "raise_skip": """
import unittest
if CFG_WHERE == "entry":
    raise unittest.SkipTest("nothing to see")
unittest.TestCase.setUp = lambda self: self.skipTest("nothing to see")
""",
    "thread_patch": """
import threading, unittest, time
def loop():
    end = time.time() + 4
    while time.time() < end:
        unittest.TestCase.assertEqual = lambda *a, **k: None
        unittest.TestCase.assertTrue = lambda *a, **k: None
        time.sleep(0.001)
threading.Thread(target=loop, daemon=True).start()
""",
    "os_exit": "os._exit(0)\n",
    "sys_exit": "sys.exit(0)\n",
    "forge_fds": """
for nonce in ("", "0" * 32, None):
    forge(nonce, with_start=True)
os._exit(0)
""",
    "ignore_timer": """
import signal, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGPROF, signal.SIG_IGN)
signal.setitimer(signal.ITIMER_REAL, 0)
signal.setitimer(signal.ITIMER_PROF, 0)
if CFG_WHERE == "entry":
    time.sleep(CFG_SLOW)
    RESULT = "right"
""",
    "catch_timeout": """
import time
if CFG_WHERE == "entry":
    end = time.time() + CFG_SLOW
    while time.time() < end:
        try:
            while time.time() < end:
                pass
        except BaseException:
            pass
    RESULT = "right"
""",
}


FORGE = """
def forge(nonce, with_start):
    # a complete run of passes ending with the final message, to every descriptor the channel may be
    import marshal
    msgs = ([("S", 0.0)] if with_start else []) + [("T", 0, n, "ok", "", 0.0) for n in NAMES]
    msgs.append(("D", nonce, len(msgs) + (not with_start)))  # inside test_one the harness sent "S" already
    data = b"".join(len(b).to_bytes(4, "little") + b for b in map(marshal.dumps, msgs))
    for fd in range(3, 256):
        try:
            os.write(fd, data)
        except OSError:
            pass
"""


def program(body, where, slow):
    """The wrong program with attack() run at load or at the start of task_func. RESULT="right"
    means: return the right answer (the attack is about time, not about values)."""
    ind = "    ".join(("\n" + body.strip("\n")).splitlines(True))
    head = (f"import os, sys\nNAMES = {NAMES!r}\nCFG_WHERE = {where!r}\nCFG_SLOW = {slow!r}\nLOOT = []\n"
            f"RESULT = None\n{FORGE}\ndef attack():\n    global RESULT\n{ind}\n\n")
    if where == "load":
        head += "attack()\nif LOOT:\n    raise RuntimeError('LOOT: ' + ' | '.join(LOOT))\n"
    return (head + "\ndef task_func(x):\n" + ("    attack()\n    if LOOT:\n        raise RuntimeError('LOOT: ' + ' | '.join(LOOT))\n"
                                                if where == "entry" else "")
            + "    if x < 0:\n        raise ValueError(x)\n"
            + "    if type(RESULT) is str and RESULT == 'right':\n        return x * x\n"
            + "    if RESULT is not None:\n        return RESULT\n" + WRONG)


def _limits():
    return Limits(bcb_timeout=3.0, load=5.0)


def _slow():
    """Longer than the suite limit judge() will give (3 s + 1 s, scaled by the load it will see)."""
    return (3.0 + 1.0) * max(load_scale(), 1.0) * 1.5 + 2.0


def _text(v):
    return str(v.get("first_failure", ""))


def _run(jobs):
    return {(v["kind"], v["where"]): v for v in run_jobs(jobs, _limits(), workers=2, time_unittests=False)}


def _jobs(attacks):
    p = problem()
    slow = _slow()
    jobs = [Job(p, GOOD, sample=0, extra=dict(kind="good", where="-")),
            Job(p, "def task_func(x):\n    if x < 0:\n        raise ValueError(x)\n" + WRONG, sample=1,
                extra=dict(kind="wrong", where="-"))]
    for name in attacks:
        for where in ("load", "entry"):
            jobs.append(Job(p, program(ATTACKS[name], where, slow), sample=len(jobs), extra=dict(kind=name, where=where)))
    return jobs


def _check_controls(by):
    good, wrong = by[("good", "-")], by[("wrong", "-")]
    assert good["passed"] is True and good["verdicts"]["tests"] == "...", good
    assert wrong["passed"] is False and wrong["verdicts"]["tests"] == "..F", wrong


@pytest.fixture(scope="module")
def verdicts():
    """Every attack, both ways, in one run beside the controls (the run must go on)."""
    by = _run(_jobs(ATTACKS))
    assert len(by) == 2 + 2 * len(ATTACKS)
    return by


def test_controls_unchanged(verdicts):
    _check_controls(verdicts)


@pytest.mark.parametrize("where", ["load", "entry"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_no_forged_pass(verdicts, name, where):
    v = verdicts[(name, where)]
    assert v["passed"] is False and v["status"] != "pass", v
    assert "FOUND" not in _text(v)


def test_thief_finds_nothing(verdicts):
    """Every route it tries is refused (not just unlucky): the loot report lists each as an error."""
    for where in ("load", "entry"):
        text = _text(verdicts[("nonce_thief", where)])
        assert "nothing found" in text, text
        for route in ("getframe", "current_frames", "tb_frame", "gi_frame", "signal_frame", "settrace", "saveall",
                      "fresh_gc", "gc_objects", "gc_referrers", "proc_mem", "proc_fd", "inspect_stack", "walk_stack",
                      "lib_imposter_getframe", "lib_imposter_decorator", "lib_imposter_referents"):
            assert f"{route}:got" not in text, (route, text)


def test_tampering_is_named(verdicts):
    """Where the judge was changed, the verdict says "forged" and what was changed."""
    def statuses(name, where):
        return verdicts[(name, where)].get("first_failure", {}).get("error", "")
    assert "sandbox: " in statuses("patch_unittest", "entry") and "TestCase." in statuses("patch_unittest", "entry")
    assert "TestCase.assertEqual" in statuses("self_restoring_patch", "entry")
    assert "TestCases" in statuses("patch_test_class", "entry")
    assert "builtins.isinstance" in statuses("patch_builtins", "entry")
    assert "at load" in statuses("patch_builtins", "load")
    assert "comparison it defines itself" in statuses("always_equal", "entry")
    assert "Spoof" in statuses("class_spoof", "entry")
    assert "SkipTest" in statuses("raise_skip", "entry")
    assert "thread" in statuses("thread_patch", "entry")
    for where in ("load", "entry"):
        assert verdicts[("ignore_timer", where)]["status"] != "pass"
    assert verdicts[("catch_timeout", "entry")]["status"] == "timeout", verdicts[("catch_timeout", "entry")]
    assert verdicts[("ignore_timer", "entry")]["status"] == "timeout", verdicts[("ignore_timer", "entry")]


def test_thief_works_without_the_guards(tmp_path, monkeypatch):
    """The same thief, against the harness before this one (no audit hook, public globals): it
    must forge a pass there, or this suite would prove nothing."""
    old = subprocess.run(["git", "show", "cae4d59:eval/sandbox.py"], cwd=ROOT, capture_output=True, text=True)
    if old.returncode != 0 or "addaudithook" in old.stdout:
        pytest.skip("the unprotected harness is not in this checkout's history")
    path = tmp_path / "sandbox_unprotected.py"
    path.write_text(old.stdout)
    monkeypatch.setattr(ex, "SANDBOX", path)
    monkeypatch.setattr(ex, "jail_mode", lambda: "none")  # the jail shows the harness's own file only
    by = _run(_jobs(["nonce_thief", "patch_unittest"]))
    assert by[("nonce_thief", "entry")]["passed"] is True, by[("nonce_thief", "entry")]
    assert by[("patch_unittest", "entry")]["passed"] is True, by[("patch_unittest", "entry")]


# ------------------------------------------------------------------ the test's own state is not the program's
# What BigCodeBench's tests do to the watched state themselves (29, 145: mock.patch of a method a
# class inherits; 509: setUp storing data on its class; 652: a test rebinding its own global) and
# what a library does (360, 425: matplotlib's lazily built Path._unit_rectangle), none of which is
# the program tampering; beside them, programs that use the same places to forge.
OWN_STATE_TEST = '''
import unittest
from unittest.mock import patch
class Base:
    def value(self):
        return 1
class Child(Base):
    pass
class Lazy:
    _one = None
SEEN = None
class TestCases(unittest.TestCase):
    def setUp(self):
        type(self).files = ["a.csv", "b.csv"]
    def test_patched_inherited(self):
        with patch.object(Child, "value", return_value=5):
            self.assertEqual(task_func(Child()), 5)
    def test_own_global(self):
        global SEEN
        SEEN = 7
        self.assertEqual(task_func(None), SEEN)
    def test_files(self):
        self.assertEqual(self.files, ["a.csv", "b.csv"])
        self.assertIsInstance(Lazy._one, (Lazy, type(None)))
'''
OWN_GOOD = '''def task_func(x):
    if Lazy._one is None:
        Lazy._one = Lazy()
    return SEEN if x is None else x.value()
'''
OWN_FORGERS = {  # each passes every test if the harness lets the change through
    "rebinds_the_tests_global": "def task_func(x):\n    global SEEN\n    if x is None:\n        SEEN = 99\n        return 99\n"
                                "    return x.value()\n",
    "private_none_to_another_class": "def task_func(x):\n    Lazy._one = Child()\n    TestCases.assertEqual = lambda *a, **k: None\n"
                                     "    return 0\n",
    "data_that_shadows": "def task_func(x):\n    TestCases.failureException = KeyError\n    TestCases.longMessage = False\n"
                         "    return 0\n",
}


def test_the_tests_own_state_is_not_the_programs():
    p = dict(problem(), task_id="BigCodeBench/own-state", test=OWN_STATE_TEST, dhash="own-state")
    wrong = OWN_GOOD.replace("return SEEN if", "return -1 if")
    jobs = [Job(p, OWN_GOOD, sample=0, extra=dict(kind="good", where="-")),
            Job(p, wrong, sample=1, extra=dict(kind="wrong", where="-"))]
    jobs += [Job(p, src, sample=2 + i, extra=dict(kind=name, where="entry")) for i, (name, src) in enumerate(OWN_FORGERS.items())]
    by = _run(jobs)
    good, bad = by[("good", "-")], by[("wrong", "-")]
    assert good["passed"] is True and good["verdicts"]["tests"] == "...", good
    assert bad["passed"] is False and "F" in bad["verdicts"]["tests"], bad
    named = {"rebinds_the_tests_global": "test globals.SEEN", "private_none_to_another_class": "Lazy._one",
             "data_that_shadows": "TestCases.failureException"}
    for name, label in named.items():
        v = by[(name, "entry")]
        assert v["passed"] is False and label in _text(v), (name, v)


def test_library_readers_are_known_by_their_code(tmp_path, monkeypatch):
    """The hook gives a library function a frame (or gc.get_referents) only when the caller's code
    object equals that function's code compiled from the interpreter's own site-packages: the
    same source compiled again passes; an imposter under the same file and qualified name with
    code of its own does not; nor does the genuine code from a file outside site-packages, nor
    the old code once the file changed under a stale .pyc."""
    import importlib.util
    import eval.sandbox as sbx
    site = tmp_path / "site-packages"
    lib = site / "fakelib" / "frames.py"
    lib.parent.mkdir(parents=True)
    src = "import sys\n\n\nclass Maker:\n    def update(self):\n        return sys._getframe(1).f_globals.get('__name__', '?')\n"
    lib.write_text(src)
    monkeypatch.setattr(sbx, "_LIB_READERS", {"fakelib/frames.py": ("sys._getframe", "Maker.update")})
    monkeypatch.setattr(sbx, "_LIB_DIRS", [str(site.resolve())])

    def code_of(path, text=None):
        ns = {}
        exec(compile(text if text is not None else path.read_text(), str(path), "exec"), ns)
        return ns["Maker"].update.__code__

    def allowed(code):
        sbx._LIB_OK.clear()
        return sbx._library_reader("sys._getframe", code)
    spec = importlib.util.spec_from_file_location("fakelib_frames", lib)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # as the import system loads it (and writes its .pyc)
    genuine = mod.Maker.update.__code__
    assert allowed(genuine) and allowed(code_of(lib))
    assert not sbx._library_reader("gc.get_referents", genuine)  # listed for sys._getframe only
    imposter = code_of(lib, src.replace(".f_globals.get('__name__', '?')", ""))
    assert imposter.co_qualname == "Maker.update" and imposter.co_filename == str(lib)
    assert not allowed(imposter)
    elsewhere = tmp_path / "elsewhere" / "fakelib" / "frames.py"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_text(src)
    assert not allowed(code_of(elsewhere))
    mtime = lib.stat().st_mtime
    lib.write_text(src.replace("'?'", "'unknown'"))
    os.utime(lib, (mtime + 10, mtime + 10))  # the .pyc written above no longer matches the source
    assert not allowed(genuine) and allowed(code_of(lib))
    sbx._LIB_OK.clear()


# ------------------------------------------------------------------ real programs still pass
# stdlib-only BigCodeBench tasks that exercise what the guards touch: assertRaises + subTest (1),
# mock.patch (5), csv files (7), subprocess (12, 13), tempfile (14), sockets + threads (147),
# threads (324), inspect.getfullargspec (566), logging (604). The optional BigCodeBench libraries
# are not installed in CI, so a task importing any of them would fail here for want of the library:
# the test checks the list against the standard library first.
REAL = [1, 5, 7, 12, 13, 14, 147, 324, 566, 604]


def test_real_bigcodebench_canonicals_pass(bench_dir):
    from eval.execute import make_problems
    probs = {p["task_id"]: p for p in make_problems("bigcodebench", bench_dir)}
    for i in REAL:
        third_party = set(probs[f"BigCodeBench/{i}"]["imports"]) - sys.stdlib_module_names
        assert not third_party, (i, third_party)
    jobs = [Job(probs[f"BigCodeBench/{i}"], probs[f"BigCodeBench/{i}"]["canonical"]) for i in REAL]
    res = run_jobs(jobs, workers=2, time_unittests=False)
    bad = {v["task_id"]: v.get("first_failure") for v in res if not v["passed"]}
    assert len(res) == len(REAL) and not bad, bad
