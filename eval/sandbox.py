"""
The sandboxed child: one process per sample, started by eval/execute.py as

    python -I eval/sandbox.py RESULT_FD

in a fresh temporary directory (its cwd, also $HOME and $TMPDIR), its own session, with stdout
going to /dev/null. It reads one marshal payload from stdin (all of it, before running anything
untrusted), applies rlimits, disables destructive calls, runs the candidate, and streams one
framed message per test input to RESULT_FD (4-byte little-endian length + a marshal tuple):

    ("R", group, index, status, value, seconds)   status: "ok" (value = the output, builtin types
                                                  only), "err" (value = a short traceback),
                                                  "timeout", "type" (an output we will not ship)
    ("T", group, test_name, status, text, seconds)  one unittest method: "ok" | "fail" | "err" | "timeout"
    ("L", traceback)                               the program did not load (syntax error, ...)
    ("D", nonce, n)                                ran to the end, after n messages (a sample that exits
                                                   early never sends it; one that injects frames breaks n)

Differential tests compare outputs in the PARENT, which never runs candidate code: a sample that
patches whatever it finds in this process (the writer, builtins, __eq__) can still only pass by
producing the right values. This file imports nothing from the project on purpose.
"""
import builtins
import io
import marshal
import os
import resource
import signal
import sys
import time
import traceback

# Everything the harness needs is bound to local names here, before untrusted code runs.
_write, _perf, _loads, _dumps, _exit = os.write, time.perf_counter, marshal.loads, marshal.dumps, os._exit
_setitimer, _ITIMER_REAL, _ITIMER_PROF = signal.setitimer, signal.ITIMER_REAL, signal.ITIMER_PROF
_cpu = time.process_time
_exc_info, _format_exc, _type, _isinstance = sys.exc_info, traceback.format_exception, type, isinstance
_SCALARS = (int, float, str, bool, type(None), complex, bytes)


class SandboxTimeout(BaseException):
    """Raised by the per-input timer; a BaseException so `except Exception` in a sample cannot eat it."""


def _on_alarm(signum, frame):
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
class Stream:
    def __init__(self, fd):
        self.fd, self.buf, self.last, self.count = fd, [], _perf(), 0

    def send(self, msg, force=False):
        body = _dumps(msg)
        self.count += 1
        self.buf.append(len(body).to_bytes(4, "little") + body)
        # flush every 50 ms (the parent watches progress) or when 64 KB are waiting
        if force or _perf() - self.last > 0.05 or sum(map(len, self.buf)) > 65536:
            self.flush()

    def flush(self):
        data = b"".join(self.buf)
        self.buf = []
        while data:
            n = _write(self.fd, data)
            data = data[n:]
        self.last = _perf()


def short_tb(limit_chars=2000):
    etype, e, tb = _exc_info()
    text = "".join(_format_exc(etype, e, tb))
    # drop the harness's own frames, keep the sample's
    text = text.replace(__file__, "<sandbox>")
    return text[-limit_chars:]


def plain(x, depth=0):
    """The output as exact builtin types (numpy scalars/arrays and builtin subclasses converted),
    or TypeError for anything else: what the parent can compare without trusting the sample."""
    t = _type(x)
    if t in _SCALARS:
        return x
    if depth > 100:
        raise TypeError("output nested deeper than 100")
    if t is list or t is tuple:
        if all(_type(v) in _SCALARS for v in x):
            return x
        out = [plain(v, depth + 1) for v in x]
        return out if t is list else tuple(out)
    if t is dict:
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in x.items()}
    if t is set or t is frozenset:
        return t(plain(v, depth + 1) for v in x)
    if getattr(t, "__module__", "") == "numpy" and hasattr(x, "tolist"):
        return plain(x.tolist(), depth + 1)
    for base in (bool, int, float, complex, str, bytes):
        if _isinstance(x, base):
            return {int: int.__int__, float: float.__float__, complex: complex.__complex__, bool: bool,
                    str: lambda s: str.__add__("", s), bytes: lambda b: bytes.__add__(b"", b)}[base](x)
    if _isinstance(x, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in dict.items(x)}
    if _isinstance(x, (list, tuple)):
        out = [plain(v, depth + 1) for v in (list.__iter__(x) if _isinstance(x, list) else tuple.__iter__(x))]
        return out if _isinstance(x, list) else tuple(out)
    if _isinstance(x, (set, frozenset)):
        return (set if _isinstance(x, set) else frozenset)(plain(v, depth + 1) for v in x)
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


def no_network():
    """Cut the network: a fresh network namespace when we may (root), else refuse non-loopback
    addresses at the socket layer."""
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
    import socket
    real_connect, real_gai = socket.socket.connect, socket.getaddrinfo
    local = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")

    def is_local(addr):
        return not isinstance(addr, tuple) or str(addr[0]) in local or str(addr[0]).startswith("127.")

    def connect(self, addr):
        if not is_local(addr):
            raise OSError(101, "sandbox: network is disabled")
        return real_connect(self, addr)

    def getaddrinfo(host, *a, **k):
        if host is not None and str(host) not in local and not str(host).startswith("127."):
            raise socket.gaierror(-2, "sandbox: network is disabled")
        return real_gai(host, *a, **k)
    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


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
            out.send(("R", g, i, "timeout", None, _perf() - t0), force=True)
            return not fatal
        except BaseException:  # noqa: B036 (SystemExit too: a sample must not end the run)
            out.send(("R", g, i, "err", short_tb(), _perf() - t0), force=True)
            if fatal:
                return False
            continue
        try:
            if not_none and _type(res) is not bool:  # MBPP+ tasks judged only on "found something"
                res = res is not None
            msg = ("R", g, i, "ok", plain(res), dt)
            out.send(msg)
        except BaseException as e:  # noqa: B036
            out.send(("R", g, i, "type", f"{_type(e).__name__}: {e}"[:500], dt), force=True)
            if fatal:
                return False
    return True


def run_check(out, g, ns, fn, test_code, limit):
    """HumanEval's own check(candidate): the candidate is wrapped so that whatever it returns is
    reduced to builtin types first (an object whose __eq__ always says True cannot pass)."""
    def candidate(*a, _plain=plain, **k):  # bound now: the sample may rebind this module's globals
        return _plain(fn(*a, **k))
    t0 = _cpu()
    try:
        _arm(limit)
        try:
            exec(compile(test_code, "<test>", "exec"), ns)
            ns["check"](candidate)
        finally:
            _disarm()
        out.send(("R", g, 0, "ok", None, _cpu() - t0), force=True)
    except SandboxTimeout:
        out.send(("R", g, 0, "timeout", None, _cpu() - t0), force=True)
    except BaseException:  # noqa: B036
        out.send(("R", g, 0, "err", short_tb(), _cpu() - t0), force=True)


def run_unittest(out, g, module, limit):
    """Every test method of every TestCase class the program defined, one message each."""
    import unittest
    classes = [v for v in list(vars(module).values())
               if isinstance(v, type) and issubclass(v, unittest.TestCase) and v.__module__ == module.__name__]
    loader = unittest.TestLoader()
    deadline = _perf() + limit
    for cls in classes:
        for name in loader.getTestCaseNames(cls):
            left = deadline - _perf()
            if left <= 0:
                out.send(("T", g, f"{cls.__name__}.{name}", "timeout", "", 0.0), force=True)
                continue
            result = unittest.TestResult()
            t0 = _perf()
            try:
                _arm(left)
                try:
                    cls(name).run(result)
                finally:
                    _disarm()
                bad = result.failures or result.errors or result.unexpectedSuccesses
                status = "ok" if not bad else ("fail" if result.failures else "err")
                text = "" if not bad else str(bad[0][1] if isinstance(bad[0], tuple) else bad[0])[-2000:]
                if not bad and result.skipped:
                    status, text = "ok", "skipped: " + str(result.skipped[0][1])[:200]
            except SandboxTimeout:
                status, text = "timeout", ""
            except BaseException:  # noqa: B036
                status, text = "err", short_tb()
            out.send(("T", g, f"{cls.__name__}.{name}", status, text, _perf() - t0), force=True)


def main():
    fd = int(sys.argv[1])
    p = _loads(sys.stdin.buffer.read())  # everything we need, read before any untrusted code runs
    nonce = p.pop("nonce", "")  # proves the final message is ours, not a sample's forgery
    tmp = os.getcwd()
    out = Stream(fd)
    sys.set_int_max_str_digits(0)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), p.get("recursion", 5000)))
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGPROF, _on_alarm)
    if any(g["kind"] == "unittest" for g in p["groups"]):
        import unittest  # noqa: F401  (the harness's own imports, done before the guards)
        import unittest.mock  # noqa: F401
    import types
    set_limits(p)
    if p.get("no_network", True):
        no_network()
    install_guards(tmp, allow_procs=p.get("allow_procs", False), max_procs=p.get("max_procs", 64),
                   extra_roots=p.get("write_roots", ()))
    module = types.ModuleType(p.get("module_name", "solution"))
    module.__dict__.update(__builtins__=builtins, __file__=os.path.join(tmp, "solution.py"))
    sys.modules[module.__name__] = module
    ns = module.__dict__
    t0 = _cpu()
    try:
        _arm(p.get("load_limit", 10.0))
        try:
            exec(compile(p["code"], "solution.py", "exec"), ns)
        finally:
            _disarm()
    except BaseException:  # noqa: B036
        out.send(("L", short_tb()), force=True)
        return
    fn = ns.get(p["entry_point"]) if p.get("entry_point") and p["mode"] == "func" else None
    if p["mode"] == "func" and not callable(fn):
        out.send(("L", f"NameError: the program does not define {p['entry_point']}()"), force=True)
        return
    out.send(("S", _cpu() - t0), force=True)  # loaded: the parent resets its progress clock
    for g, grp in enumerate(p["groups"]):
        kind = grp["kind"]
        if kind == "inputs":
            if not run_inputs(out, g, fn, grp["inputs"], grp["limits"], grp["fatal"], grp.get("not_none", False),
                              grp.get("cap")):
                break
        elif kind == "check":
            run_check(out, g, ns, fn, grp["test"], grp["limit"])
        elif kind == "unittest":
            try:
                _arm(grp["limit"])
                try:
                    exec(compile(grp["test"], "test.py", "exec"), ns)
                finally:
                    _disarm()
            except BaseException:  # noqa: B036
                out.send(("T", g, "<load tests>", "err", short_tb(), 0.0), force=True)
                continue
            run_unittest(out, g, module, grp["limit"])
    out.send(("D", nonce, out.count), force=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        # skip interpreter teardown (atexit handlers and __del__ of sample objects run nothing more)
        _exit(0)
