"""
The sandboxed child: one process per sample, started by eval/execute.py as

    python -I sandbox.pyc RESULT_FD      # this file, compiled once per evaluator (execute.harness_file)

in a fresh directory (its cwd, also $HOME and $TMPDIR), its own session, with stdout going to
/dev/null (and, where the machine allows it, inside the bubblewrap jail of eval/jail.py). It reads
one marshal payload from stdin (all of it, before running anything untrusted), applies rlimits,
disables destructive calls, runs the candidate, and streams one framed message per test input to
RESULT_FD (4-byte little-endian length + a marshal tuple):

    ("R", group, index, status, value, seconds, exact)
                                                  status: "ok" (value = the output, builtin types
                                                  only, marshalled; None: the raw bytes of the "B"
                                                  frame just before), "err" (value = a short
                                                  traceback), "timeout", "type" (an output we will
                                                  not ship); exact: an "ok" output holds no NaN,
                                                  so it equals a decoded copy of itself (trusted
                                                  for canonical solutions only)
    ("B", n)                                       n raw bytes follow: the next "R" message's value
    ("T", group, test_name, status, text, seconds)  one unittest method: "ok" | "fail" | "err" |
                                                  "timeout" | "forged" (the program tampered with
                                                  what judges it: text says how)
    ("L", traceback)                               the program did not load (syntax error, ...)
    ("S", seconds)                                 loaded
    ("D", nonce, n)                                ran to the end, after n messages (a sample that exits
                                                   early never sends it; one that injects frames breaks n)
    ("P", k)                                       mode "batch" only: program k of the payload's list starts
                                                   (group indices run on across programs)

Differential tests (HumanEval+, MBPP+) compare outputs in the PARENT, which never runs candidate
code: a sample that patches whatever it finds in this process can still only pass by producing the
right values. BigCodeBench's unittest verdicts cannot be moved out: its tests call the program and
assert on live objects (DataFrames, Axes, mocks) in this process. What protects them, against a
program written in plain Python (no ctypes or other native code; see "What is not covered"):

1. The harness is unreachable. It runs with a PRIVATE copy of this module's globals and of the
   builtins (`_private_main`): rebinding anything in `sys.modules['__main__']` or `builtins` does not
   change the code that judges. It hands the program no function of its own (the entry-point
   wrapper and the stubs below are built from code constants and an empty globals dict), defines
   no class whose methods could be found through `object.__subclasses__()`, and keeps the run's
   nonce in a closure reachable only from its own frames.
2. Frames are refused. An irremovable `sys.addaudithook` hook (installed before the program loads)
   refuses `sys._getframe`, `sys._current_frames`, `tb_frame`/`gi_frame`/`cr_frame`/`ag_frame`,
   `gc.get_objects/get_referrers/get_referents`, `sys.settrace/setprofile`, a second audit hook
   (it would see the harness's objects go by), assigning `function.__code__`, and opening
   `/proc/PID/mem`, `/proc/PID/fd/*` (the channel's pipe opens for reading there),
   `/proc/PID/map_files`, `/proc/PID/task`, `/dev/fd/*`, and `/proc`, `/proc/PID` themselves
   (symlinks followed with the harness's own readlink).
   Python signal handlers (which receive the interrupted frame) and `gc.set_debug` (DEBUG_SAVEALL
   would hand over dead frames through `gc.garbage`) are refused too, and a fresh copy of `gc` or
   `_signal` cannot be made with `_imp.create_builtin`. Without a frame object nothing reaches the
   harness's locals: the nonce, the channel, the verdicts in progress. Code that only reads a frame
   for its own use keeps working: `traceback.extract_stack/format_stack/print_stack` and the
   traceback walkers behind `format_exc`, `TracebackException`, `logging.exception` are stand-ins
   that get names, files and lines from the hook (frame stand-ins carry the code object, empty
   locals/globals); `logging` does not look for the caller (`logging._srcfile = None`);
   `inspect.currentframe()` returns None (as it may); `namedtuple`/`typing`/`enum` fall back (they
   catch the ValueError); `assertRaises` no longer clears frames (traceback.clear_frames is a
   no-op). Three library functions that take a frame or gc.get_referents and hand nothing on
   (matplotlib's warn_external, scipy's decorator, pandas' chained-assignment check) keep them:
   the hook lets a caller through when its code object equals that function's code compiled from
   the interpreter's own site-packages (`_LIB_READERS`), never by name. The hook itself reads
   frames only in its own thread, for the objects it was asked about, with the garbage collector
   off (no finalizer of the program runs meanwhile; the program has no signal handlers or audit
   hooks). What still gets "sys._getframe is disabled": inspect.stack() (lazy_loader), pandas'
   DataFrame.query/eval and patsy's formulas (they read the caller's variables), any other library
   calling sys._getframe directly.
3. The judge is checked around the program. The harness does not use unittest's TestResult or
   TestCase.run (both reachable and patchable); it calls setUp, the test method, tearDown and the
   cleanups itself and decides from whether they raised. Before the program loads it records the
   identity of every entry of the builtins, of every unittest module and of every unittest class;
   after the test code is defined it adds the test classes and their bases, the names the test
   code binds, and the functions, classes and submodules of every module the test code imports
   (plus the dicts of those classes). The entry point is replaced, while tests run, by a wrapper
   that snapshots all of this before each call and compares identities after it returns (or
   raises): a program that rebinds or adds anything there (`TestCase.assertEqual`,
   `builtins.isinstance`, `os.path.exists`, `pd.DataFrame.equals`, a self-restoring patch not yet
   triggered), leaves a thread running, raises SkipTest, or returns an object whose comparison
   methods it defined itself (`__eq__` always True) gets "forged" for that test, and the state is
   put back before the test's assertions run. The same comparison runs after load and after every
   test. A test that skips counts as failed (BigCodeBench has no skipping tests).
4. The channel: every message is written by the harness's captured `os.write` to a descriptor
   number it alone tracks; the parent accepts the run only with the final message carrying the nonce
   after exactly the messages the harness sent, so frames a program writes to any descriptor
   (injected, partial, garbage) make the run "forged", never a pass.

What is not covered (in-process, Python cannot do better; the bubblewrap jail limits the damage,
not the verdict):
- native code: ctypes (loaded by numpy/pandas, so it cannot be refused; once loaded, its types
  are reachable through object.__subclasses__() even without an import, e.g. after the
  harness's own no_network() used it outside the jail; in the jail it does not load ctypes), cffi,
  a compiled extension, can read and write this
  process's memory;
- sample code that the test calls other than through the entry point (a returned generator it
  iterates, a method of a returned object, a callback) runs outside the wrapper's bracket: a
  self-restoring patch planted there is only caught if it is still in place when the test ends;
  so is one planted by a finalizer or weakref callback of a returned object that dies while the
  test asserts;
- the always-equal check looks at the returned object and builtin containers in it, for methods
  whose globals are the program's or that were compiled as solution.py: one inside a library
  object (a DataFrame of such objects), or compiled by exec() into another namespace under
  another file name, is not seen;
- names the test code uses but does not import itself (the prompt's `import pandas as pd`)
  resolve in the program's namespace: a program can bind them, or their sys.modules entry, to
  look-alike objects before the tests run; and library internals the test does not name
  (what `pd.testing.assert_frame_equal` calls) are not snapshotted;
- a relative `os.open(name, dir_fd=...)` is resolved against the cwd, not the dir_fd, by the
  /proc check (a symlink made through the original os.symlink, which the public guards keep in
  a closure, could lead there).
This file imports nothing from the project on purpose.
"""
import builtins
import io
import itertools
import marshal
import os
import resource
import signal
import sys
import time
import traceback

# Everything the harness needs is bound to local names here, before untrusted code runs.
_write, _perf, _loads, _dumps, _exit = os.write, time.perf_counter, marshal.loads, marshal.dumps, os._exit
_BIG_VALUE = 1 << 20  # a marshalled output larger than this goes out raw (make_stream's send_value)
_setitimer, _ITIMER_REAL, _ITIMER_PROF = signal.setitimer, signal.ITIMER_REAL, signal.ITIMER_PROF
_cpu = time.process_time
_exc_info, _format_exc, _type, _isinstance = sys.exc_info, traceback.format_exception, type, isinstance
_SCALARS = (int, float, str, bool, type(None), complex, bytes)
_SCALAR_SET, _set, _map, _flat = frozenset(_SCALARS), set, map, itertools.chain.from_iterable


class SandboxTimeout(BaseException):
    """Raised by the per-input timer; a BaseException so `except Exception` in a sample cannot eat it."""


def _on_alarm(signum, frame):
    # the one handler left public (signal.getsignal returns it): it holds nothing of the harness
    raise SandboxTimeout()


def _arm(limit):
    """`limit` seconds of wall-clock time, as EvalPlus (a sample that sleeps is as slow as one that
    computes); the parent has already scaled the limits for the machine's load."""
    _setitimer(_ITIMER_PROF, limit)
    _setitimer(_ITIMER_REAL, limit)


def _disarm():
    _setitimer(_ITIMER_PROF, 0)
    _setitimer(_ITIMER_REAL, 0)


# ---------------------------------------------------------------- result stream
def make_stream(fd, nonce):
    """The only writer of the channel: closures, not a class (a class would be reachable through
    object.__subclasses__(), and with it this harness's private globals)."""
    state = [[], _perf(), 0, 0]  # waiting frames, last flush, messages sent, bytes waiting

    def flush():
        data = b"".join(state[0])
        state[0], state[3] = [], 0
        while data:
            n = _write(fd, data)
            data = data[n:]
        state[1] = _perf()

    def send(msg, force=False):
        body = _dumps(msg)
        state[2] += 1
        state[3] += len(body) + 4  # counted here: summing the waiting frames on every send is quadratic
        state[0].append(len(body).to_bytes(4, "little") + body)
        # flush every 50 ms (the parent watches progress) or when 64 KB are waiting
        if force or state[3] > 65536 or _perf() - state[1] > 0.05:
            flush()

    def send_value(body):
        """A large marshalled value: a ("B", n) frame, then its n bytes as they are (framing it in a
        message would copy it twice more here and once more in the parent: MBPP+'s largest answer
        is 640 MB)."""
        send(("B", len(body)), force=True)
        view = memoryview(body)
        while view:
            view = view[_write(fd, view):]

    def final():
        send(("D", nonce[0], state[2]), force=True)
    return _Namespace(send=send, send_value=send_value, flush=flush, final=final)


def short_tb(limit_chars=2000):
    """The exception being handled, formatted by the harness itself (see format_exc)."""
    return format_exc(_exc_info()[1], limit_chars)


def plain(x, depth=0, fl=None):
    """The output as exact builtin types (numpy scalars/arrays and builtin subclasses converted),
    or TypeError for anything else: what the parent can compare without trusting the sample.
    `fl` (a list) gets True appended when a NaN (float or complex) occurs anywhere in it: an
    answer without one equals a decoded copy of itself, which the parent uses for the trusted
    canonical's answers only (`a != a` holds for a NaN alone among builtin scalars; operator.ne,
    unlike list equality, does not take an item's identity for equality)."""
    t = _type(x)
    if t in _SCALARS:
        if fl is not None and (t is float or t is complex) and x != x:
            fl.append(True)
        return x
    if depth > 100:
        raise TypeError("output nested deeper than 100")
    if t is list or t is tuple:
        kinds = _set(_map(_type, x))  # at C speed: no Python loop over the items
        if kinds <= _SCALAR_SET:
            if fl is not None and (float in kinds or complex in kinds) and any(_map(_ne, x, x)):
                fl.append(True)
            return x
        # a table (rows of exact lists/tuples of scalars: 1.7M rows in MBPP+'s largest answer) is
        # checked in one C pass instead of a Python call per row
        if kinds <= {list, tuple}:
            inner = _set(_map(_type, _flat(x)))
            if inner <= _SCALAR_SET:
                if fl is not None and (float in inner or complex in inner) and any(_map(_ne, _flat(x), _flat(x))):
                    fl.append(True)
                return x
        out = [plain(v, depth + 1, fl) for v in x]
        return out if t is list else tuple(out)
    if t is dict:
        return {plain(k, depth + 1, fl): plain(v, depth + 1, fl) for k, v in x.items()}
    if t is set or t is frozenset:
        return t(plain(v, depth + 1, fl) for v in x)
    if getattr(t, "__module__", "") == "numpy" and hasattr(x, "tolist"):
        return plain(x.tolist(), depth + 1, fl)
    for base in (bool, int, float, complex, str, bytes):
        if _isinstance(x, base):
            v = {int: int.__int__, float: float.__float__, complex: complex.__complex__, bool: bool,
                 str: lambda s: str.__add__("", s), bytes: lambda b: bytes.__add__(b"", b)}[base](x)
            if fl is not None and base in (float, complex) and v != v:
                fl.append(True)
            return v
    if _isinstance(x, dict):
        return {plain(k, depth + 1, fl): plain(v, depth + 1, fl) for k, v in dict.items(x)}
    if _isinstance(x, (list, tuple)):
        out = [plain(v, depth + 1, fl) for v in (list.__iter__(x) if _isinstance(x, list) else tuple.__iter__(x))]
        return out if _isinstance(x, list) else tuple(out)
    if _isinstance(x, (set, frozenset)):
        return (set if _isinstance(x, set) else frozenset)(plain(v, depth + 1, fl) for v in x)
    raise TypeError(f"output of type {t.__module__}.{t.__qualname__}")


# ---------------------------------------------------------------- limits and guards
def set_limits(p):
    def lim(what, n):
        try:
            resource.setrlimit(what, (n, n))
        except (ValueError, OSError):
            pass
    if p.get("memory_mb"):
        lim(resource.RLIMIT_AS, p["memory_mb"] << 20)
    if p.get("cpu_s"):
        resource.setrlimit(resource.RLIMIT_CPU, (int(p["cpu_s"]), int(p["cpu_s"]) + 2))
    lim(resource.RLIMIT_FSIZE, p.get("fsize_mb", 256) << 20)
    lim(resource.RLIMIT_CORE, 0)
    if p.get("nproc"):  # only binds for non-root users; the guards below cover root
        lim(resource.RLIMIT_NPROC, p["nproc"])


def no_network(jailed):
    """Cut the network: in the jail the process has a network namespace of its own already (only
    its loopback); outside it, a fresh one when we may (root). Either way the audit hook refuses
    non-loopback addresses (_net_refused): no socket module is patched or even imported here,
    and no ctypes is loaded in the jail (its types would be reachable from the program)."""
    if jailed:
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if os.geteuid() == 0 and libc.unshare(0x40000000) == 0:  # CLONE_NEWNET: nothing but loopback
            try:  # bring loopback up: tests that talk to a local server still work
                import fcntl
                import socket
                import struct
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS UP|LOOPBACK|RUNNING
                s.close()
            except Exception:
                pass
            return
    except Exception:
        pass


_LOCAL_HOSTS = frozenset(("localhost", "127.0.0.1", "::1", "0.0.0.0", ""))


def _local_host(h):
    """Is `h` (a host as given to the socket layer) loopback? Only exact str/bytes are read (no
    method of the program's runs in the hook); anything else counts as not loopback."""
    if _type(h) is bytes:
        h = _fsdecode_bytes(h, "ascii", "replace")
    return _type(h) is str and (h in _LOCAL_HOSTS or str.startswith(h, "127."))


def _net_refused(event, args):
    """The audit hook's network check: True for a socket call to refuse."""
    if event == "socket.getaddrinfo":
        return args[0] is not None and not _local_host(args[0])
    addr = args[1]
    # an AF_INET/AF_INET6 address is a tuple (a subclass included: the socket layer reads those);
    # anything else (an AF_UNIX path, None for a connected socket's sendmsg) is not the network
    # (the type's own MRO is read: isinstance would ask a program's __class__, running its code here)
    return tuple in _mro_of(_type(addr)) and not (tuple.__len__(addr) and _local_host(tuple.__getitem__(addr, 0)))


def install_guards(tmp, allow_procs, max_procs=64, extra_roots=()):
    """Disable what could damage the machine or the run. Paths may be changed only under `tmp`;
    signals may go only to our own process group; process creation is off (function benchmarks)
    or counted across the whole sample, forks included (BigCodeBench, whose tasks use subprocess).
    In-process guards stop accidents and naive attacks, not ctypes: see eval/README.md."""
    import posix
    import shutil
    real = {n: getattr(posix, n) for n in dir(posix)}
    import posixpath
    tmp = os.path.realpath(tmp)
    roots = [tmp] + [os.path.realpath(r) for r in extra_roots]
    my_pgid = os.getpgid(0)
    counter = os.path.join(tmp, ".sandbox-procs")

    # bound now: tests patch os.path.* and os.getcwd, and the check must not go through their mocks
    readlink, getcwd, normpath, fsdecode = real["readlink"], real["getcwd"], posixpath.normpath, os.fsdecode

    def inside(path, dir_fd=None):
        try:
            if isinstance(path, int):
                path = readlink(f"/proc/self/fd/{path}")
            path = fsdecode(path)
            if not path.startswith("/"):  # relative to dir_fd (shutil.rmtree) or to the cwd
                base = readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else getcwd()
                path = base + "/" + path
            p = normpath(path)
        except Exception:
            return False
        # symlinks cannot lead out: os.symlink itself only links inside to inside
        return p == "/dev/null" or any(p == r or p.startswith(r + "/") for r in roots)

    def refuse(what):
        raise PermissionError(f"sandbox: {what} is disabled")

    def path_guard(name, nargs=1):
        fn = real[name]

        def guarded(*a, **k):
            for p in a[:nargs]:
                if not inside(p, k.get("dir_fd", k.get("src_dir_fd"))):
                    refuse(f"{name}({p!r}) outside the sample's directory")
            return fn(*a, **k)
        guarded.__name__ = name
        return guarded

    patched = {}
    for name in ("remove", "unlink", "rmdir", "mkdir", "truncate", "chmod", "chown", "lchown", "utime", "mkfifo",
                 "mknod"):
        if name in real:
            patched[name] = path_guard(name)
    for name in ("rename", "replace", "link", "symlink"):
        if name in real:
            patched[name] = path_guard(name, 2)

    real_open = real["open"]

    def guarded_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) and not inside(path, k.get("dir_fd")):
            refuse(f"writing {path!r} outside the sample's directory")
        return real_open(path, flags, *a, **k)
    patched["open"] = guarded_open

    def kill(pid, sig):
        try:
            ok = pid == os.getpid() or (pid > 0 and real["getpgid"](pid) == my_pgid)
        except OSError:
            ok = False
        if not ok:
            refuse(f"kill({pid})")
        return real["kill"](pid, sig)

    def killpg(pgid, sig):
        if pgid != my_pgid:
            refuse(f"killpg({pgid})")
        return real["killpg"](pgid, sig)
    patched.update(kill=kill, killpg=killpg)
    for name in ("chroot", "fchdir", "setuid", "setgid", "seteuid", "setegid", "setsid", "setpgid", "setpgrp",
                 "setreuid", "setregid", "fchown", "plock"):
        if name in real:
            patched[name] = (lambda n: lambda *a, **k: refuse(n))(name)

    def count_process():
        # one byte per process created, across every process of this sample (forks share the file)
        fd = real_open(counter, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"x")
            n = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if n > max_procs:
            refuse(f"creating more than {max_procs} processes")

    spawners = [n for n in ("fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "system", "execv", "execve",
                            "register_at_fork") if n in real]
    for name in spawners:
        if name == "register_at_fork":
            continue
        if allow_procs:
            patched[name] = (lambda fn: lambda *a, **k: (count_process(), fn(*a, **k))[1])(real[name])
        else:
            patched[name] = (lambda n: lambda *a, **k: refuse(f"process creation ({n})"))(name)

    for name, fn in patched.items():
        setattr(posix, name, fn)
        if hasattr(os, name):
            setattr(os, name, fn)
    for name in ("execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
                 "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "popen"):
        if hasattr(os, name) and not allow_procs:
            setattr(os, name, (lambda n: lambda *a, **k: refuse(f"process creation ({n})"))(name))

    import _posixsubprocess
    real_fork_exec = _posixsubprocess.fork_exec
    if allow_procs:
        _posixsubprocess.fork_exec = lambda *a, **k: (count_process(), real_fork_exec(*a, **k))[1]
    else:
        _posixsubprocess.fork_exec = lambda *a, **k: refuse("process creation (subprocess)")

    real_rmtree, real_move = shutil.rmtree, shutil.move

    def rmtree(path, *a, **k):
        if not inside(path):
            refuse(f"rmtree({path!r}) outside the sample's directory")
        return real_rmtree(path, *a, **k)

    def move(src, dst, *a, **k):
        if not (inside(src) and inside(dst)):
            refuse(f"move({src!r}, {dst!r}) outside the sample's directory")
        return real_move(src, dst, *a, **k)
    rmtree.avoids_symlink_attacks = True
    shutil.rmtree, shutil.move = rmtree, move
    shutil.chown = lambda *a, **k: refuse("chown")

    real_bopen = builtins.open

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and not inside(file):
            refuse(f"writing {file!r} outside the sample's directory")
        return real_bopen(file, mode, *a, **k)
    builtins.open = io.open = open_


# ---------------------------------------------------------------- hardening (docstring, points 1-2)
import _imp
import _thread
import gc
import itertools
import linecache
import operator
import posix
import types
import warnings

_Namespace = types.SimpleNamespace
_MISSING = object()
_FRAME_ATTRS = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame"))
_REFUSED = frozenset(("sys.addaudithook", "sys._current_frames", "sys.settrace", "sys.setprofile", "sys._setprofileallthreads",
                      "sys._settraceallthreads", "gc.get_objects", "gc.get_referrers", "gc.get_referents"))
_NO_FRESH = frozenset(("gc", "_signal", "signal", "sys", "builtins", "_imp", "_thread"))
_CMP_DUNDERS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__contains__",
                "__class__", "__del__", "__instancecheck__", "__subclasscheck__")
_HEAPTYPE = 1 << 9
_mro_of, _dict_of = type.__dict__["__mro__"].__get__, type.__dict__["__dict__"].__get__
_flags_of, _qualname_of = type.__dict__["__flags__"].__get__, type.__dict__["__qualname__"].__get__
_name_of = type.__dict__["__name__"].__get__
_type_setattr, _type_delattr, _obj_setattr = type.__setattr__, type.__delattr__, object.__setattr__
_is, _repeat, _get_ident, _thread_count = operator.is_, itertools.repeat, _thread.get_ident, _thread._count
_ne = operator.ne
_readlink, _getcwd = posix.readlink, posix.getcwd
_p_open, _p_read, _p_close, _p_stat = posix.open, posix.read, posix.close, posix.stat
_CACHE_TAG = sys.implementation.cache_tag
_gc_disable, _gc_enable, _gc_isenabled, _gc_get_debug, _gc_set_debug, _gc_garbage = (
    gc.disable, gc.enable, gc.isenabled, gc.get_debug, gc.set_debug, gc.garbage)
_tb_of = BaseException.__dict__["__traceback__"].__get__
import _signal
import _socket
_gaierror = _socket.gaierror
_signal_signal, _py_signal, _create_builtin = _signal.signal, signal.signal, _imp.create_builtin
_sleep, _fsdecode_bytes = time.sleep, bytes.decode
_audit = sys.audit
_getline = linecache.getline

# the harness's hook state (private globals only, see _private_main)
_ARMED = [False]
_NONET = [False]     # no_network() was asked for: the hook refuses non-loopback addresses
_NET_EVENTS = frozenset(("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"))
_ALLOW_TB = set()    # id() of the traceback objects the harness itself is formatting
_MAIN = [0]          # the harness's thread
_GF = [0]            # the thread whose next sys._getframe is the hook's own (see _caller_code)
# Library functions that take a frame (sys._getframe) or gc.get_referents without handing it on,
# each read for that: matplotlib's warn_external reads only the __name__ of its callers' globals,
# scipy's decorator the caller's __name__, pandas only tests whether an object refers to anything.
# A caller is let through when its code object EQUALS that function's code as compiled in the
# interpreter's own site-packages (read-only in the jail): code equality is bytecode, constants and
# names, so it behaves as the library's does whatever globals it was given; a name or a file name
# alone is never enough.
_LIB_READERS = {"matplotlib/_api/__init__.py": ("sys._getframe", "warn_external"),
                "scipy/_lib/decorator.py": ("sys._getframe", "FunctionMaker.update"),
                "pandas/core/generic.py": ("gc.get_referents", "NDFrame._check_setitem_copy")}
_LIB_OK = {}         # (event, code object) -> verdict, for the callers seen so far
_LIB_DIRS = []       # the interpreter's site-packages, resolved (main, before the program exists)
_PRELOADED = {}      # id -> class, every class of a module imported before the program existed (library
#                      code, e.g. pyfakefs' TestCase): a test class may have these as bases
_sys_getframe = sys._getframe
_ENTRY = _Namespace(real=None, active=False, targets=[], notes=[], ns=None)


def _sealed(src, name, **consts):
    """A function compiled from `src` whose global names are replaced by constants and whose
    globals are an empty dict: handing it to the program hands over nothing of the harness."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "'str' object is not callable": the placeholders below
        code = compile(src, "<sandbox>", "exec")
    scratch = {}
    exec(code, scratch)  # only for the default values of the arguments
    fcode = scratch["f"].__code__
    fcode = fcode.replace(co_consts=tuple(consts.get(c, c) if _type(c) is str else c for c in fcode.co_consts))
    return types.FunctionType(fcode, {"__builtins__": {}}, name, scratch["f"].__defaults__)


# Public stand-ins. Each only raises an audit event; the hook, holding the real functions, decides.
_entry_wrapper = _sealed("def f(*a, **k):\n    box = []\n    '@audit'('sandbox.entry', a, k, box)\n    return box[0]\n",
                         "task_func", **{"@audit": _audit})
_signal_stub = _sealed("def f(signalnum, handler):\n    box = []\n    '@audit'('sandbox.signal', signalnum, handler, box)\n"
                       "    return box[0]\n", "signal", **{"@audit": _audit})
_create_builtin_stub = _sealed("def f(spec):\n    box = []\n    '@audit'('sandbox.create_builtin', spec, box)\n"
                               "    return box[0]\n", "create_builtin", **{"@audit": _audit})
_set_debug_stub = _sealed("def f(flags):\n    '@audit'('sandbox.gc.set_debug', flags)\n", "set_debug", **{"@audit": _audit})
_no_clear_frames = _sealed("def f(tb):\n    return None\n", "clear_frames")
_no_currentframe = _sealed("def f():\n    return None\n", "currentframe")
# traceback's stack functions (pyparsing calls extract_stack at import): the hook walks the frames
# and hands back only names and line numbers
_extract_stack_stub = _sealed("def f(f=None, limit=None):\n    box = []\n    '@audit'('sandbox.stack', f, limit, box)\n"
                              "    return box[0]\n", "extract_stack", **{"@audit": _audit})
_format_stack_stub = _sealed("def f(f=None, limit=None):\n    box = []\n    '@audit'('sandbox.stack', f, limit, box)\n"
                             "    return '@format'(box[0])\n", "format_stack", **{"@audit": _audit,
                                                                               "@format": traceback.format_list})
_print_stack_stub = _sealed("def f(f=None, limit=None, file=None):\n    box = []\n"
                            "    '@audit'('sandbox.stack', f, limit, box)\n    '@print'(box[0], file=file)\n",
                            "print_stack", **{"@audit": _audit, "@print": traceback.print_list})
_from_list = traceback.StackSummary.from_list
# ... and the traceback walkers (format_exc, logging.exception): frame stand-ins with the code and line
_walk_tb_stub = _sealed("def f(tb):\n    box = []\n    '@audit'('sandbox.walk_tb', tb, False, box)\n"
                        "    return box[0]\n", "walk_tb", **{"@audit": _audit})
_walk_full_stub = _sealed("def f(tb):\n    box = []\n    '@audit'('sandbox.walk_tb', tb, True, box)\n"
                          "    return box[0]\n", "_walk_tb_with_full_positions", **{"@audit": _audit})
_code_position = getattr(traceback, "_get_code_position", None)


def _resolve(path, depth=0):
    """`path` with every symlink followed, by the harness's own readlink (os.path is the program's)."""
    if not path.startswith("/"):
        path = _getcwd() + "/" + path
    parts = path.split("/")
    out = ""
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            out = out.rsplit("/", 1)[0]
            continue
        cand = out + "/" + part
        try:
            target = _readlink(cand)
        except (OSError, ValueError):
            out = cand
            continue
        if depth > 40:
            return cand
        return _resolve((target if target.startswith("/") else out + "/" + target) + "/" + "/".join(parts[i + 1:]),
                        depth + 1)
    return out or "/"


def _reaches_process(path):
    """/proc/PID/mem, /proc/PID/fd/*, /proc/PID/map_files/*, /proc/PID/task/*, and /proc or /proc/PID
    themselves (a dir_fd to open those relative to): this process's memory or its channel."""
    try:
        p = _resolve(_fsdecode_bytes(path, "utf-8", "surrogateescape") if _type(path) is bytes else path)
    except Exception:  # noqa: BLE001 - unresolvable: judge the text as given
        p = path if _type(path) is str else ""
    comps = p.split("/")
    if len(comps) < 2 or comps[1] != "proc":
        return False
    if len(comps) == 2 or (len(comps) == 3 and comps[2].isdigit()):
        return True  # /proc or /proc/PID itself: a directory to open "PID/mem" relative to (dir_fd)
    return comps[2].isdigit() and any(c in ("mem", "fd", "map_files", "task") for c in comps[3:])


def _audit_hook(event, args):
    """Irremovable (sys.addaudithook); armed just before the program loads (docstring, point 2).
    The stand-ins' events ("sandbox.*") are served armed or not."""
    if not _ARMED[0] and not event.startswith("sandbox."):
        return
    if event == "object.__getattr__":
        if args[1] in _FRAME_ATTRS and not ((id(args[0]) in _ALLOW_TB and _get_ident() == _MAIN[0])
                                           or _GF[0] == _get_ident()):
            raise AttributeError(f"sandbox: {args[1]} is disabled (frames lead to the harness)")
    elif event == "sys._getframe":
        if _GF[0] == _get_ident() or _library_reader(event, _caller_code()):
            return
        raise ValueError("sandbox: sys._getframe is disabled (frames lead to the harness)")
    elif event in _REFUSED:
        if event == "gc.get_referents" and _library_reader(event, _caller_code()):
            return
        raise RuntimeError(f"sandbox: {event} is disabled (it reaches the harness's objects)")
    elif event == "object.__setattr__":
        if args[1] == "__code__":
            raise RuntimeError("sandbox: assigning __code__ is disabled")
    elif event == "open":
        if _type(args[0]) in (str, bytes) and _reaches_process(args[0]):
            raise PermissionError(f"sandbox: opening {args[0]!r} is disabled (this process's memory or channel)")
    elif event == "sandbox.entry":
        a, k, box = args
        box.append(_call_entry(a, k))
    elif event == "sandbox.signal":
        signalnum, handler, box = args
        if _isinstance(signalnum, int):  # the enums signal.py passes: as the plain ints _signal wants
            signalnum = int.__int__(signalnum)
        if _isinstance(handler, int):
            handler = int.__int__(handler)
        if callable(handler):
            raise PermissionError("sandbox: Python signal handlers are disabled (they receive the interrupted frame)")
        box.append(_signal_signal(signalnum, handler))
    elif event == "sandbox.create_builtin":
        spec, box = args
        if getattr(spec, "name", None) in _NO_FRESH:
            raise ImportError(f"sandbox: a second copy of {spec.name} is disabled")
        box.append(_create_builtin(spec))
    elif event == "sandbox.stack":
        f, limit, box = args
        if f is None:
            f = _own_frame(3)  # 0 _own_frame, 1 this hook, 2 the stub, 3 its caller (sys.audit has no frame)
        rows = []
        while f is not None and (limit is None or len(rows) < abs(limit)):
            code = f.f_code
            rows.append((code.co_filename, f.f_lineno, code.co_name, _getline(code.co_filename, f.f_lineno).strip()))
            f = f.f_back
        f = code = None
        box.append(_from_list(rows[::-1]))
    elif event == "sandbox.walk_tb":
        tb, full, box = args
        rows = []
        was = _gc_isenabled()
        _gc_disable()
        _GF[0] = _get_ident()
        try:
            while _type(tb) is types.TracebackType and len(rows) < 1000:
                code, line, lasti = tb.tb_frame.f_code, tb.tb_lineno, tb.tb_lasti
                rows.append((code, line, lasti))
                tb = tb.tb_next
        finally:
            _GF[0] = 0
            if was:
                _gc_enable()
        out = []
        for code, line, lasti in rows:
            fake = _Namespace(f_code=code, f_lineno=line, f_globals={}, f_locals={}, f_back=None)
            pos = _code_position(code, lasti) if full and _code_position else (line, None, None, None)
            out.append((fake, pos if full else line))
        box.append(out)
    elif event == "sandbox.gc.set_debug":
        raise RuntimeError("sandbox: gc.set_debug is disabled (gc.garbage would hold dead frames)")
    elif event in _NET_EVENTS and _NONET[0] and _net_refused(event, args):
        if event == "socket.getaddrinfo":
            raise _gaierror(-2, "sandbox: network is disabled")
        raise OSError(101, "sandbox: network is disabled")


def _own_frame(depth):
    """sys._getframe(depth) for the hook itself: allowed to this thread only, with the collector
    off (no finalizer of the program runs in between; it has no signal handlers or hooks)."""
    was = _gc_isenabled()
    _gc_disable()
    _GF[0] = _get_ident()
    try:
        return _sys_getframe(depth)
    finally:
        _GF[0] = 0
        if was:
            _gc_enable()


def _caller_code():
    """The code object that called sys._getframe or gc.get_referents (the frame under this hook's)."""
    try:
        return _own_frame(3).f_code  # 0 _own_frame, 1 here, 2 the hook, 3 the caller (both are C)
    except ValueError:
        return None


def _read_all(path):
    fd = _p_open(path, posix.O_RDONLY)
    try:
        chunks = []
        while True:
            b = _p_read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        _p_close(fd)


def _module_code(path):
    """The module code the import system runs for the source file `path`: its cached bytecode
    when that was written for this very source (mtime and size in the header), else compiled."""
    d, _, name = path.rpartition("/")
    try:
        data = _read_all(f"{d}/__pycache__/{name[:-3]}.{_CACHE_TAG}.pyc")
        st = _p_stat(path)
        if (int.from_bytes(data[4:8], "little") == 0 and int.from_bytes(data[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                and int.from_bytes(data[12:16], "little") == st.st_size & 0xFFFFFFFF):
            return _loads(data[16:])
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return compile(_read_all(path), path, "exec", dont_inherit=True)


def _library_reader(event, code):
    """Is `code`, the caller of `event`, the code of the library function _LIB_READERS lets have it?"""
    if _type(code) is not types.CodeType:
        return False
    key = (event, code)
    ok = _LIB_OK.get(key)
    if ok is None:
        ok = False
        fn = code.co_filename
        for suffix, (ev, qualname) in _LIB_READERS.items():
            if ev != event or _type(fn) is not str or not fn.endswith("/" + suffix) or code.co_qualname != qualname:
                continue
            try:
                real = _resolve(fn)
                if any(real.startswith(d + "/") for d in _LIB_DIRS):
                    todo = [_module_code(real)]
                    while todo and not ok:  # the function's code is a constant of its class's or module's
                        c = todo.pop()
                        ok = c.co_qualname == qualname and c == code
                        todo += [k for k in c.co_consts if _type(k) is types.CodeType]
            except (OSError, ValueError, SyntaxError, TypeError):
                ok = False
            break
        _LIB_OK[key] = ok
    return ok


def _preimport(sources):
    """Import, before the program exists, what it and its tests import (library code, trusted
    here): its classes and functions are then known by identity."""
    import importlib.util
    names, subs = set(), set()
    for src in sources:
        try:
            tree = compile(src, "<imports>", "exec", ast.PyCF_ONLY_AST)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if _isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif _isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                # `from scipy import stats`: a submodule that the package loads lazily on first
                # access (scipy's __getattr__), which would otherwise be imported after the hook is armed
                subs.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    for name in sorted(names) + sorted(subs - names):
        try:
            # a `from X import a` name is imported only when X is now loaded and has a submodule a
            if importlib.util.find_spec(name.split(".")[0]) is not None and (
                    name not in subs or name.rpartition(".")[0] in sys.modules and importlib.util.find_spec(name)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    __import__(name)
        except BaseException:  # noqa: B036 - the program will meet the same error itself, and report it
            pass


def harden(libraries=True):
    """Install the hook (armed later) and the stand-ins, before the program exists. `libraries`:
    also import inspect and logging to give them their stand-ins (what library code expects);
    left out for a program that names neither and imports nothing outside the stdlib (they cost
    5 ms a sample; the hook refuses what they would reach either way)."""
    _MAIN[0] = _get_ident()
    sys.addaudithook(_audit_hook)
    if libraries or "inspect" in sys.modules or "logging" in sys.modules:
        import inspect
        import logging
        logging._srcfile = None             # no caller lookup (it walks frames)
        inspect.currentframe = _no_currentframe
    traceback.clear_frames = _no_clear_frames   # assertRaises' exit: frames are off limits anyway
    traceback.extract_stack, traceback.format_stack, traceback.print_stack = (
        _extract_stack_stub, _format_stack_stub, _print_stack_stub)
    traceback.walk_tb = _walk_tb_stub
    if hasattr(traceback, "_walk_tb_with_full_positions"):
        traceback._walk_tb_with_full_positions = _walk_full_stub
    _sig = sys.modules["_signal"]
    for m in list(sys.modules.values()):  # every binding of the real functions, not only the obvious ones
        d = getattr(m, "__dict__", None)
        if _type(d) is not dict:
            continue
        for k, v in list(d.items()):
            if v is _signal_signal or v is _py_signal:
                d[k] = _signal_stub
            elif v is _create_builtin:
                d[k] = _create_builtin_stub
            elif v is _gc_set_debug:
                d[k] = _set_debug_stub
    assert _sig.signal is _signal_stub and signal.signal is _signal_stub and gc.set_debug is _set_debug_stub


def arm():
    _gc_set_debug(0)
    _ARMED[0] = True


def format_exc(e, limit_chars=2000):
    """`e` with its traceback, formatted without letting anything else see a frame: frame access
    is allowed to this thread, for these traceback objects, with the collector off (no finalizer
    of the program runs meanwhile; it cannot install signal handlers)."""
    if e is None:
        return ""
    rows = []
    was = _gc_isenabled()
    _gc_disable()
    try:
        tb = _tb_of(e)
        while _type(tb) is types.TracebackType and len(rows) < 100:
            _ALLOW_TB.add(id(tb))
            code = tb.tb_frame.f_code
            rows.append((code.co_filename, tb.tb_lineno, code.co_name))
            tb = tb.tb_next
    except BaseException:  # noqa: B036 - a message is not worth failing the run for
        pass
    finally:
        _ALLOW_TB.clear()
        tb = code = None
        if was:
            _gc_enable()
    try:
        t = _type(e)
        head = f"{_qualname_of(t)}: {str.__str__(str(e))}"
    except BaseException:  # noqa: B036
        head = "<exception that cannot be printed>"
    lines = ["Traceback (most recent call last):"]
    for fname, line, name in rows:
        if fname == __file__ or fname == "<sandbox>":
            continue  # the harness's own frames
        src = _SOURCES.get(fname)
        lines.append(f'  File "{fname}", line {line}, in {name}')
        text = src[line - 1] if src and 0 < line <= len(src) else "" if src or fname.startswith("<") else _getline(fname, line)
        if text.strip():
            lines.append("    " + text.strip())
    text = "\n".join(lines + [head])
    return text[-limit_chars:]


_SOURCES = {}  # file name -> lines of the program and the test code (for messages)


# ---------------------------------------------------------------- the judge, checked (docstring, point 3)
def _is_class(v):
    return bool(_flags_of(_type(v)) & (1 << 31))  # Py_TPFLAGS_TYPE_SUBCLASS: no code of v runs


def _kind_for_module(v):
    t = _type(v)
    return t is types.FunctionType or t is types.BuiltinFunctionType or _is_class(v)


def _target(label, owner, kind, keys=None):
    """One protected mapping: kind "class" (a class's dict: every entry, additions count), "module"
    (a module's functions, classes and submodules: rebinding them counts), "names" (these keys of
    a dict), "builtins" (every existing entry; additions do not count)."""
    m = _dict_of(owner) if kind == "class" else (owner if _type(owner) is dict else owner.__dict__)
    if keys is None:
        if kind == "module":
            name = m.get("__name__", "")
            keys = [k for k, v in list(m.items()) if _kind_for_module(v)
                    or (_type(v) is types.ModuleType and getattr(v, "__name__", "") == f"{name}.{k}")]
        else:
            keys = list(m.keys())
    return (label, owner, m, kind, tuple(keys), frozenset(keys) if kind == "class" else None)


def snapshot(targets):
    """Each target's watched entries now: a class's every entry it has now (so what a test added,
    a mock.patch say, is part of the state a program call is compared with)."""
    out = []
    for t in targets:
        keys = tuple(t[2].keys()) if t[3] == "class" else t[4]
        out.append((t, keys, list(map(t[2].get, keys, _repeat(_MISSING)))))
    return out


_PLAIN_DATA = frozenset((str, int, float, bool, bytes, type(None), tuple, list, dict, set, frozenset))


def _benign(owner, kind, k, old, new):
    """A change to a class that cannot alter what judges: a lazily built singleton (a private
    entry that held None now holds an instance of exactly that class: matplotlib's
    Path._unit_rectangle), or a new data entry (plain builtin data, not a dunder) that shadows
    nothing in the class's bases (a test's setUp storing file names on its class)."""
    if kind != "class" or _type(k) is not str:
        return False
    if old is None and k.startswith("_") and _type(new) is owner:
        return True
    return (old is _MISSING and _type(new) in _PLAIN_DATA and not (k.startswith("__") and k.endswith("__"))
            and not any(k in _dict_of(c) for c in _mro_of(owner)[1:]))


def changes(snap):
    """What differs from `snap` (identity), as short labels."""
    bad = []
    for (label, owner, m, kind, _, _), keys, vals in snap:
        cur = list(map(m.get, keys, _repeat(_MISSING)))
        if not all(map(_is, cur, vals)):
            bad += [f"{label}.{k}" for k, v, c in zip(keys, vals, cur) if c is not v and not _benign(owner, kind, k, v, c)]
        if kind == "class" and len(m) != len(keys):
            # __annotations__ and copyreg's __slotnames__ are caches the interpreter adds (copy, pickle)
            had = frozenset(keys)
            bad += [f"{label}.{k} (added)" for k, v in list(m.items()) if k not in had
                    and k not in ("__annotations__", "__slotnames__") and not _benign(owner, kind, k, _MISSING, v)]
    return bad


def restore(snap):
    for (label, owner, m, kind, _, _), keys, vals in snap:
        keyset = frozenset(keys)
        for k, v in zip(keys, vals):
            try:
                if m.get(k, _MISSING) is v:
                    continue
                if kind == "class":
                    _type_setattr(owner, k, v) if v is not _MISSING else _type_delattr(owner, k)
                elif v is _MISSING:
                    m.pop(k, None)
                else:
                    m[k] = v
            except Exception:  # noqa: BLE001 - e.g. a read-only slot: reported by changes() anyway
                pass
        if kind == "class" and len(m) != len(keys):
            for k in [k for k in list(m.keys()) if k not in keyset and k != "__annotations__"]:
                try:
                    _type_delattr(owner, k)
                except Exception:  # noqa: BLE001
                    pass


def _classes_of(cls, seen):
    """cls and its bases that are classes of Python code (builtin types cannot be changed)."""
    out = []
    for c in _mro_of(cls):
        if c is not object and _flags_of(c) & _HEAPTYPE and id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def base_targets():
    """Before the program loads: builtins, and every unittest module and class."""
    ts = [_target("builtins", builtins.__dict__, "builtins")]
    seen = set()
    names = sorted(n for n in sys.modules if n == "unittest" or n.startswith("unittest."))
    ts.append(_target("sys.modules", sys.modules, "names", names))
    for n in names:
        mod = sys.modules[n]
        ts.append(_target(n, mod, "module"))
        for v in list(vars(mod).values()):
            if _is_class(v) and v.__module__ == n:
                ts += [_target(_qualname_of(c), c, "class") for c in _classes_of(v, seen)]
    return ts, seen


def test_targets(base, seen, ns, test_src, entry, TestCase):
    """After the test code is defined: its classes (and bases), the names it binds, and what it
    imports: module functions/classes/submodules, the dicts of those classes (and their bases)."""
    tree = compile(test_src, "test.py", "exec", ast.PyCF_ONLY_AST)
    bound, classes, chains = [], [], []
    for node in tree.body:
        if _isinstance(node, (ast.Import, ast.ImportFrom)):
            bound += [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
        elif _isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.append(node.name)
            if _isinstance(node, ast.ClassDef):
                classes.append(node.name)
        elif _isinstance(node, ast.Assign):
            bound += [t.id for t in node.targets if _isinstance(t, ast.Name)]
    for node in ast.walk(tree):  # a.b.c in the test code: a, a.b, a.b.c may be modules
        if _isinstance(node, ast.Attribute):
            chain = []
            while _isinstance(node, ast.Attribute):
                chain.append(node.attr)
                node = node.value
            if _isinstance(node, ast.Name):
                chains.append([node.id] + chain[::-1])
    ts = list(base)
    tcls = [ns[c] for c in classes if _is_class(ns.get(c)) and issubclass(ns[c], TestCase)]
    mine = {id(ns[c]) for c in classes if _is_class(ns.get(c))}
    foreign = []
    for c in tcls:  # every base of a test class: unittest's own (recorded before the program) or the test code's
        foreign += [_qualname_of(k) for k in _mro_of(c) if _flags_of(k) & _HEAPTYPE and id(k) not in seen
                    and id(k) not in mine and _PRELOADED.get(id(k)) is not k]
    for c in tcls:
        ts += [_target(_qualname_of(k), k, "class") for k in _classes_of(c, seen)]
    used = {n.id for n in ast.walk(tree) if _isinstance(n, ast.Name)}
    ts.append(_target("test globals", ns, "names", [n for n in (set(bound) | used | {entry}) if n in ns]))
    # names a test function declares `global` (and so may rebind itself): watched around each
    # program call, but not between and after tests, where they are the test's own state
    written = {n for node in ast.walk(tree) if _isinstance(node, ast.Global) for n in node.names}
    mods, objs = {}, []
    for n in set(bound):
        v = ns.get(n)
        if _type(v) is types.ModuleType:
            mods[id(v)] = v
        elif _is_class(v):
            objs.append(v)
    for chain in chains:  # follow attribute chains through modules
        v = ns.get(chain[0])
        for attr in chain[1:]:
            if _type(v) is not types.ModuleType:
                break
            mods[id(v)] = v
            v = v.__dict__.get(attr)
            if _is_class(v):
                objs.append(v)
        if _type(v) is types.ModuleType:
            mods[id(v)] = v
    base_names = {t[0] for t in base}
    for mod in mods.values():
        name = mod.__dict__.get("__name__", "?")
        if name in base_names:
            continue
        t = _target(name, mod, "module")
        ts.append(t)
        objs += [mod.__dict__[k] for k in t[4] if _is_class(mod.__dict__.get(k))]
    for c in objs:
        ts += [_target(_qualname_of(k), k, "class") for k in _classes_of(c, seen)]
    return ts, tcls, foreign, written


def suspect(x, ns, depth=0, budget=None):
    """A comparison of `x` the program itself decides: a class with a Python-level comparison or
    truth method (or __class__, __del__) defined by the program, in x or in a builtin container
    in x. Returns the method's name or None."""
    budget = budget if budget is not None else [10000]
    budget[0] -= 1
    t = _type(x)
    if t in _SCALARS or budget[0] < 0:
        return None
    if depth < 6 and t in (list, tuple, set, frozenset, dict):
        for v in (list(dict.items(x)) if t is dict else x):
            r = suspect(v, ns, depth + 1, budget)
            if r:
                return r
        return None
    for c in tuple(_mro_of(t)) + tuple(_mro_of(_type(t))):
        if c is object or c is type or not _flags_of(c) & _HEAPTYPE:
            continue
        d = _dict_of(c)
        for name in _CMP_DUNDERS:
            f = d.get(name)
            if _type(f) in (staticmethod, classmethod, property):
                f = f.__func__ if _type(f) is not property else f.fget
            if _type(f) is types.FunctionType and (f.__globals__ is ns or f.__code__.co_filename == "solution.py"):
                return f"{_qualname_of(c)}.{name}"
    return None


def _after_program(pre, threads0, what):
    # threads0 None: do not look at threads (a test may leave its own server thread behind)
    """Compare with `pre`, put it back, and look for what keeps running after the program returned."""
    notes = []
    bad = changes(pre)
    if bad:
        restore(pre)
        notes.append(f"{what} changed what judges it: {', '.join(bad[:8])}" + (" ..." if len(bad) > 8 else ""))
    if threads0 is not None and _thread_count() > threads0:
        end = _perf() + 1.0
        while _thread_count() > threads0 and _perf() < end:
            _sleep(0.01)
        if _thread_count() > threads0:
            notes.append(f"{what} left a thread running (it could change the judge while the test asserts)")
    if _gc_get_debug():
        _gc_set_debug(0)
        del _gc_garbage[:]
        notes.append(f"{what} set gc debug flags")
    return notes


def _call_entry(a, k):
    """The entry point, bracketed (docstring, point 3)."""
    e = _ENTRY
    if not e.active:
        return e.real(*a, **k)
    pre = snapshot(e.targets)
    n0 = _thread_count()
    try:
        res = e.real(*a, **k)
    except BaseException as exc:  # noqa: B036 - the test may expect it: re-raised
        e.notes += _after_program(pre, n0, "the program")
        if _isinstance(exc, _SkipTest):
            e.notes.append("the program raised SkipTest")
        raise
    e.notes += _after_program(pre, n0, "the program")
    why = suspect(res, e.ns)
    if why:
        e.notes.append(f"the program returned an object whose comparison it defines itself ({why})")
    return res


_SkipTest = None  # bound at load to the real unittest.SkipTest (main)


def run_case(cls, name, doCleanups):
    """setUp, the test, tearDown, cleanups, as unittest runs them; returns the first exception."""
    inst = cls(name)
    method = getattr(inst, name)
    err = None
    try:
        inst.setUp()
    except BaseException as e:  # noqa: B036
        err = e
    else:
        try:
            method()
        except BaseException as e:  # noqa: B036
            err = e
        if _isinstance(err, SandboxTimeout):
            return err
        try:
            inst.tearDown()
        except BaseException as e:  # noqa: B036
            err = e if err is None else err
    if _isinstance(err, SandboxTimeout):
        return err
    try:
        if doCleanups(inst) is not True and err is None:
            err = RuntimeError("a cleanup function failed")
    except BaseException as e:  # noqa: B036
        err = e if err is None else err
    return err


def run_unittest(out, g, ns, test_src, limit, entry, base, seen, U, load_notes):
    """Every test method of every TestCase class the test code defines, one message each."""
    deadline = _perf() + limit
    e = _ENTRY
    real = ns.get(entry)
    if real is not None and real is not _entry_wrapper and e.real is None:
        e.real, e.ns = real, ns
        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            try:
                setattr(_entry_wrapper, attr, getattr(real, attr))
            except Exception:  # noqa: BLE001
                pass
        _entry_wrapper.__wrapped__ = real  # inspect.signature(task_func) is task_func's
    if e.real is not None:
        ns[entry] = _entry_wrapper
    targets, classes, foreign, written = test_targets(base, seen, ns, test_src, entry, U.TestCase)
    if foreign:
        load_notes = load_notes + [f"a base class of the tests does not come from unittest or the test code: "
                                   f"{', '.join(foreign[:5])}"]
    e.targets = targets
    clean = snapshot([t if t[0] != "test globals" or not written else
                      _target(t[0], t[1], "names", [k for k in t[4] if k not in written]) for t in targets])
    for cls in classes:
        for name in U.names(cls):
            tname = f"{_name_of(cls)}.{name}"
            left = deadline - _perf()
            if left <= 0:
                out.send(("T", g, tname, "timeout", "", 0.0), force=True)
                continue
            notes = list(load_notes) + [f"before this test: {n}" for n in _after_program(clean, 0, "the program")]
            _signal_signal(signal.SIGALRM, _on_alarm)
            _signal_signal(signal.SIGPROF, _on_alarm)
            e.notes, e.active = [], True
            t0 = _perf()
            try:
                try:
                    _arm(left)
                    err = run_case(cls, name, U.doCleanups)
                finally:
                    _disarm()
            except BaseException as exc:  # noqa: B036 - the timer firing late, or anything else
                err = exc
            e.active = False
            notes += e.notes + _after_program(clean, None, "the test")
            dt = _perf() - t0
            if dt > left and err is None:  # it caught the timer (or stopped it) and went on
                err = SandboxTimeout()
            if notes:
                status, text = "forged", "sandbox: " + "; ".join(notes)[:1500] + ("\n" + format_exc(err) if err else "")
            elif err is None:
                status, text = "ok", ""
            elif _isinstance(err, SandboxTimeout):
                status, text = "timeout", ""
            elif _isinstance(err, _SkipTest):
                status, text = "err", "skipped (a skip is not a pass here): " + format_exc(err)
            else:
                status, text = ("fail" if _isinstance(err, AssertionError) else "err"), format_exc(err)
            err = None
            out.send(("T", g, tname, status, text[-2000:], dt), force=True)


# ---------------------------------------------------------------- running
def run_inputs(out, g, fn, inputs, limits, fatal, not_none=False, cap=None):
    """Call fn(*args) on each input (fresh copies), ship each output. Each input has its own
    wall-clock limit, and the group as a whole `cap` seconds (EvalPlus's per-group timeout).
    Returns False when the group failed and was fatal (the rest of the run is skipped)."""
    g_end = _perf() + (cap if cap is not None else sum(limits) + 1.0)
    for i, blob in enumerate(inputs):
        args = _loads(blob)
        t0 = _perf()
        try:
            left = g_end - t0
            if left <= 0:
                raise SandboxTimeout()
            _arm(min(limits[i], left))
            try:
                res = fn(*args)
            finally:
                _disarm()
            dt = _perf() - t0  # wall seconds: what the limits are scaled from
        except SandboxTimeout:
            out.send(("R", g, i, "timeout", None, _perf() - t0, False), force=True)
            return not fatal
        except BaseException:  # noqa: B036 (SystemExit too: a sample must not end the run)
            out.send(("R", g, i, "err", short_tb(), _perf() - t0, False), force=True)
            if fatal:
                return False
            continue
        try:
            if not_none and _type(res) is not bool:  # MBPP+ tasks judged only on "found something"
                res = res is not None
            # the output marshalled on its own: the parent compares these bytes with the canonical's
            # first (equal bytes, equal values) and decodes them only when they differ
            fl = []
            body = _dumps(plain(res, 0, fl))
            if len(body) > _BIG_VALUE:
                out.send_value(body)
                body = None  # the value is the raw bytes just sent
            out.send(("R", g, i, "ok", body, dt, not fl))
        except BaseException as e:  # noqa: B036
            out.send(("R", g, i, "type", f"{_type(e).__name__}: {e}"[:500], dt, False), force=True)
            if fatal:
                return False
    return True


def _read_payload():
    """All of stdin, unbuffered (nothing of it stays in a buffer the program could peek at); then
    stdin becomes /dev/null."""
    chunks = []
    while True:
        b = os.read(0, 1 << 20)
        if not b:
            break
        chunks.append(b)
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    return _loads(b"".join(chunks))


def _needs_libraries(codes):
    """Might one of these programs reach inspect or logging (harden's stand-ins)? Yes when it
    names them, imports dynamically, or imports a module outside the stdlib (library code)."""
    import re
    pat = re.compile(r"(?:^|;)[ \t]*(?:from[ \t]+([A-Za-z_][\w]*)|import[ \t]+([^\n#;]+))", re.M)
    for code in codes:
        if "inspect" in code or "logging" in code or "__import__" in code or "importlib" in code:
            return True
        for m in pat.finditer(code):
            names = [m.group(1)] if m.group(1) else [n.strip().split(".")[0].split(" ")[0] for n in m.group(2).split(",")]
            if any(n and n.strip("()") not in sys.stdlib_module_names for n in names):
                return True
    return False


def main():
    global _SkipTest, ast
    fd = int(sys.argv[1])
    p = _read_payload()  # everything we need, read before any untrusted code runs
    nonce = [p.pop("nonce", "")]  # proves the final message is ours; lives only in out.final's closure
    out = make_stream(fd, nonce)
    del nonce
    tmp = os.getcwd()
    _LIB_DIRS[:] = [_resolve(d) for d in sys.path if d.startswith("/") and d.endswith(("site-packages", "dist-packages"))]
    sys.set_int_max_str_digits(0)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), p.get("recursion", 5000)))
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGPROF, _on_alarm)
    unit = any(g["kind"] == "unittest" for g in p.get("groups", ()))
    U = base_snap = base = seen = None
    if unit:
        import unittest  # the harness's own imports, done before the guards
        import unittest.mock  # noqa: F401
        _SkipTest = unittest.SkipTest
        U = _Namespace(TestCase=unittest.TestCase, names=unittest.TestLoader().getTestCaseNames,
                       doCleanups=unittest.TestCase.doCleanups)
    if unit:
        import ast  # only the unittest harness parses code (_preimport, test_targets)
        _preimport([p["code"]] + [g["test"] for g in p["groups"] if g["kind"] == "unittest"])
    harden(unit or _needs_libraries([q["code"] for q in p.get("programs", [p])]))
    set_limits(p)
    if p.get("no_network", True):
        _NONET[0] = True  # here, not in no_network: that one is public (its globals are not the hook's)
        no_network(p.get("jailed", False))
    install_guards(tmp, allow_procs=p.get("allow_procs", False), max_procs=p.get("max_procs", 64),
                   extra_roots=p.get("write_roots", ()))
    if unit:
        base, seen = base_targets()
        base_snap = snapshot(base)
        for m in list(sys.modules.values()):  # strong references: an id is not reused while held here
            for v in list(getattr(m, "__dict__", {}).values()):
                if _is_class(v):
                    _PRELOADED[id(v)] = v
    arm()
    if p["mode"] == "batch":
        # trusted code only (the canonical solutions, for their expected outputs): one module each,
        # one after another in this process, as EvalPlus computes all of its expected outputs in one
        g0 = 0
        for k, prog in enumerate(p["programs"]):
            out.send(("P", k), force=True)
            run_program(out, prog, tmp, g0, None, None, None, None)
            g0 += len(prog["groups"])
    elif not run_program(out, p, tmp, 0, U, base_snap, base, seen):
        return  # did not load: no final message (the parent sees why in the "L" one)
    out.final()


def run_program(out, p, tmp, g0, U, base_snap, base, seen):
    """Define one program (a fresh module) and run its groups; group indices in messages start at g0.
    False when the program did not load."""
    unit = U is not None
    module = types.ModuleType(p.get("module_name", "solution"))
    module.__dict__.update(__builtins__=builtins, __file__=os.path.join(tmp, "solution.py"))
    sys.modules[module.__name__] = module
    ns = module.__dict__
    _SOURCES["solution.py"] = p["code"].splitlines()
    t0 = _cpu()
    try:
        _arm(p.get("load_limit", 10.0))
        try:
            exec(compile(p["code"], "solution.py", "exec"), ns)
        finally:
            _disarm()
    except BaseException:  # noqa: B036
        out.send(("L", short_tb()), force=True)
        return False
    fn = ns.get(p["entry_point"]) if p.get("entry_point") and p["mode"] == "func" else None
    if p["mode"] == "func" and not callable(fn):
        out.send(("L", f"NameError: the program does not define {p['entry_point']}()"), force=True)
        return False
    load_notes = [f"at load: {n}" for n in _after_program(base_snap, 0, "the program")] if unit else []
    out.send(("S", _cpu() - t0), force=True)  # loaded: the parent resets its progress clock
    for g, grp in enumerate(p["groups"], g0):
        kind = grp["kind"]
        if kind == "inputs":
            if not run_inputs(out, g, fn, grp["inputs"], grp["limits"], grp["fatal"], grp.get("not_none", False),
                              grp.get("cap")):
                break
        elif kind == "unittest":
            _SOURCES["test.py"] = grp["test"].splitlines()
            try:
                _arm(grp["limit"])
                try:
                    exec(compile(grp["test"], "test.py", "exec"), ns)
                finally:
                    _disarm()
            except BaseException:  # noqa: B036
                out.send(("T", g, "<load tests>", "err", short_tb(), 0.0), force=True)
                continue
            run_unittest(out, g, ns, grp["test"], grp["limit"], p.get("entry_point") or "task_func", base, seen, U,
                         load_notes)
    return True


def _private_main():
    """main, rebuilt with a private copy of this module's globals and of the builtins (docstring,
    point 1). The guards stay public: they are handed to the program (os.remove is one of them),
    and a function hands over its globals."""
    pub = globals()
    priv = dict(pub)
    priv["__builtins__"] = dict(vars(builtins))
    for k, v in list(priv.items()):  # the harness's state: its own objects, not the public module's
        if _type(v) in (list, dict, set) and v is not _gc_garbage and not k.startswith("__"):
            priv[k] = _type(v)(v)
        elif _type(v) is _Namespace:
            priv[k] = _Namespace(**vars(v))
    for k, v in list(priv.items()):
        if _type(v) is types.FunctionType and v.__globals__ is pub and k not in ("install_guards", "no_network",
                                                                                 "_on_alarm"):
            f = types.FunctionType(v.__code__, priv, v.__name__, v.__defaults__, v.__closure__)
            f.__kwdefaults__ = v.__kwdefaults__
            priv[k] = f
    return priv["main"]


def _run():
    main_, quit_ = _private_main(), os._exit
    try:
        main_()
    finally:
        # skip interpreter teardown (atexit handlers and __del__ of sample objects run nothing more)
        quit_(0)


if __name__ == "__main__":
    _run()
