"""
The OS-level sandbox around each sample's process: bubblewrap (the system package `bubblewrap`,
installed by setup.sh), one fresh jail per sample. eval/sandbox.py's in-process guards stay on
inside it as a second layer.

    argv, fds = jail_command([python, "-I", harness, "3"], env, disk_mb=512, private_tmp=True)
    subprocess.Popen(argv, pass_fds=fds + (3,), ...)

What the sample gets (bwrap options in brackets):
  - its own user, mount, pid, network, IPC, UTS and cgroup namespaces [--unshare-all --unshare-user:
    the user namespace is required, not tried]; the network namespace has only a loopback of its
    own, so nothing on the host's loopback can be reached;
  - no capabilities at all, so it cannot mount, setns back out, or override file permissions
    [--cap-drop ALL], and no new user namespaces to regain them in [--disable-userns]; it is uid 0
    inside its user namespace, mapped to the evaluator's own uid (root-owned files not readable by
    others stay readable to a root evaluator: the few secrets below are hidden; run eval as a
    normal user to drop that too);
  - the whole system read-only [--ro-bind / /], a fresh /proc of its own pid namespace (it sees
    its own processes, never the evaluator's: no /proc/<parent>/environ to read) and a minimal
    read-only /dev with a small private /dev/shm;
  - the only writable places: its directory, a size-limited tmpfs [--size N --tmpfs], and for
    BigCodeBench a private size-limited /tmp (the other benchmarks get /tmp read-only and empty);
  - empty directories over the project checkout and the folder holding it, the benchmark data,
    the expected-output cache, $HOME and root-only secrets (/etc/shadow, ...); only what Python
    needs to start (its prefix, the venv, the harness file) is bound back, read-only;
  - an environment of exactly the variables given [--clearenv --setenv], its own session
    [--new-session], and a kill of every process in it when its parent goes [--die-with-parent]:
    the jail's init is pid 1 of its pid namespace, and when it exits the kernel kills the rest,
    so no process outlives its sample.
The bwrap options travel over a pipe [--args FD], so neither the environment given nor the
paths hidden show in the jail's /proc/1/cmdline.

mode() probes once per process that bwrap works here (a real jailed `python -c`). When it does
not (no bwrap, no user namespaces in a container) or SNOWCODER_SANDBOX=none, samples run as before
with only the in-process guards, and the run says so: a line on stderr, `sandbox` in
results.json and summary.md. SNOWCODER_SANDBOX=bwrap makes a missing jail an error instead.

    python -m eval.jail [--overhead]   # the mode here [and the spawn time it adds: A B A B timings]
"""
import functools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

HARNESS = Path(__file__).with_name("sandbox.py")
SAMPLE_DIR = "/tmp/snowcoder_sbx"  # the sample's cwd, $HOME and $TMPDIR inside the jail (no "-": a
#                                    BigCodeBench test splits paths on it)
SECRETS = ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh", "/etc/ssl/private",
           "/etc/sudoers", "/etc/sudoers.d", "/var/log"]  # root-only files uid 0 (no capabilities) could read as owner

_lock = threading.Lock()
_modes = {}  # ($SNOWCODER_SANDBOX, bwrap's path) -> what _probe() found


def _real(p) -> str:
    return os.path.realpath(os.path.expanduser(str(p)))


def _under(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip("/") + "/")


def hidden_paths() -> list[str]:
    """What the sample must not see: the checkout (and the folder holding it: sibling trees such
    as ../shared), every benchmark dir, the caches, $HOME, the evaluator's temp dir, root-only secrets."""
    from eval.execute import cache_root  # here: eval.execute imports this module
    from formats import PROJECT_ROOT, benchmark_dirs, cache_dir
    cands = [PROJECT_ROOT, PROJECT_ROOT.parent, *benchmark_dirs(), cache_dir(), cache_root(), Path.home(),
             tempfile.gettempdir(), *SECRETS]
    if os.environ.get("SNOWCODER_BENCHMARKS"):
        cands.append(os.environ["SNOWCODER_BENCHMARKS"])
    out = []
    for p in map(_real, cands):
        if p != "/" and os.path.lexists(p) and p not in out:
            out.append(p)
    return out


def python() -> str:
    """The interpreter to start in the jail: sys.executable with its directory's symlinks resolved
    (a venv reached through a symlinked folder would otherwise point into a hidden path) but not the
    file itself (a venv's bin/python links to the base interpreter, which would lose the venv)."""
    return os.path.join(_real(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


@functools.lru_cache(maxsize=None)
def _needed_paths() -> tuple:
    return tuple(needed_paths())


def needed_paths() -> list[str]:
    """What the child needs to start Python: the interpreter's prefixes (a venv and the Python it
    points at), its site-packages and stdlib, the harness file (jail_args takes them once per
    process: they belong to the interpreter; what is hidden is looked up every time)."""
    cands = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable),
             os.path.dirname(_real(sys.executable)), HARNESS]
    cands += [v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib")]
    out = []
    for p in map(_real, cands):
        if os.path.exists(p) and p not in out:
            out.append(p)
    return out


def _outermost(paths):
    """Drop paths that lie inside another one of the list (one mount covers them)."""
    paths = sorted(set(paths), key=len)
    keep = []
    for p in paths:
        if not any(_under(p, k) for k in keep):
            keep.append(p)
    return keep


def jail_args(env: dict, disk_mb: int, private_tmp: bool, bind=()) -> list[str]:
    """bwrap's options (everything before the command) for one sample; `bind`: more files to
    bind back read-only (the compiled harness)."""
    size = str(disk_mb << 20)
    a = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
         "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--size", str(64 << 20), "--tmpfs", "/dev/shm"]
    hide = [h for h in hidden_paths() if not _under(h, "/tmp")]  # /tmp is replaced as a whole below
    top = _outermost(hide)
    # hide (outermost dirs only); a private /tmp; bind back what Python needs from under those;
    # hide again what lies inside a bound-back dir (a cache inside a venv, say); then make the
    # hiding tmpfs read-only (after the binds: their mount points are made in it)
    for p in top:
        a += ["--tmpfs", p] if os.path.isdir(p) else ["--ro-bind", "/dev/null", p]
    a += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", SAMPLE_DIR]
    need = [n for n in _outermost([*_needed_paths(), *(_real(b) for b in bind)]) if any(_under(n, h) for h in top + ["/tmp"])]
    for p in need:
        a += ["--ro-bind", p, p]
    for p in hide:
        if any(_under(p, n) and p != n for n in need):
            a += ["--tmpfs", p, "--remount-ro", p] if os.path.isdir(p) else ["--ro-bind", "/dev/null", p]
    for p in top:
        if os.path.isdir(p):
            a += ["--remount-ro", p]
    if not private_tmp:  # BigCodeBench's tests write /tmp/...; the other benchmarks get it read-only
        a += ["--remount-ro", "/tmp"]
    a += ["--remount-ro", "/dev", "--chdir", SAMPLE_DIR, "--clearenv"]
    for k, v in env.items():
        a += ["--setenv", k, v]
    return a


def jail_command(argv: list[str], env: dict, disk_mb: int, private_tmp: bool, bind=()):
    """The command line that runs `argv` jailed, and the fds to pass on (the argument pipe, read
    by bwrap before it starts anything). The caller closes the fds after Popen."""
    args = jail_args(env, disk_mb, private_tmp, bind)  # options only: bwrap takes the command from its argv
    blob = b"".join(s.encode() + b"\0" for s in args)
    r, w = os.pipe()
    if len(blob) >= 65536:  # a pipe holds 64 KiB: more would block here before bwrap reads
        os.close(r), os.close(w)
        raise RuntimeError(f"bwrap arguments too long ({len(blob)} bytes)")
    os.write(w, blob)
    os.close(w)
    return [shutil.which("bwrap") or "bwrap", "--args", str(r), "--", *argv], (r,)


def _probe() -> str:
    want = os.environ.get("SNOWCODER_SANDBOX", "auto").strip().lower()
    if want in ("none", "off", "0"):
        return f"none: disabled by SNOWCODER_SANDBOX={want}"
    if not shutil.which("bwrap"):
        reason = "none: bubblewrap (bwrap) is not installed"
    else:
        # a real jailed Python (interpreter, harness dir and /tmp reachable), not just `bwrap true`
        code = f"import os, sys; assert os.getcwd() == {SAMPLE_DIR!r}; open('x', 'w').write('1'); print('ok')"
        env = dict(PATH="/usr/bin:/bin", HOME=SAMPLE_DIR, TMPDIR=SAMPLE_DIR)
        try:
            argv, fds = jail_command([python(), "-I", "-c", code], env, 16, False)
            try:
                r = subprocess.run(argv, pass_fds=fds, capture_output=True, text=True, timeout=60, env=env)
            finally:
                for fd in fds:
                    os.close(fd)
            ok = r.returncode == 0 and r.stdout.strip() == "ok"
            reason = "bwrap" if ok else "none: bwrap does not work here (" + (
                (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1][:300]) + ")"
        except (OSError, subprocess.SubprocessError, RuntimeError) as e:
            reason = f"none: bwrap failed to start ({e})"
    if want == "bwrap" and reason != "bwrap":
        raise RuntimeError(f"SNOWCODER_SANDBOX=bwrap but {reason[6:]}")
    return reason


def mode() -> str:
    """'bwrap' when samples run jailed, else 'none: <why>' (printed once on stderr). Probed once
    per process, $SNOWCODER_SANDBOX and bwrap found on $PATH."""
    key = (os.environ.get("SNOWCODER_SANDBOX", "auto"), shutil.which("bwrap"))
    with _lock:
        if key not in _modes:
            _modes[key] = _probe()
            if _modes[key] != "bwrap":
                print(f"WARNING: eval sandbox {_modes[key]}; samples run with in-process guards only "
                      "(they can read the evaluator's files and environment)", file=sys.stderr, flush=True)
        return _modes[key]


def _overhead(n=10):
    """Spawn time of a trivial harness run, jailed and not, interleaved (A B A B)."""
    from eval import execute
    payload = dict(mode="func", code="def f(x):\n    return x\n", entry_point="f", memory_mb=4096,
                   groups=[dict(kind="inputs", inputs=[__import__("marshal").dumps([1])], limits=[5.0], fatal=True)])
    times = {"bwrap": [], "none": []}
    for i in range(2 * n):
        kind = "bwrap" if i % 2 == 0 else "none"
        t0 = time.perf_counter()
        msgs, info = execute.run_sandboxed(payload, 30.0, 60.0, jail=(kind == "bwrap"))
        assert info["finished"], info
        times[kind].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


if __name__ == "__main__":
    m = mode()
    print(f"sandbox: {m}")
    if m == "bwrap" and "--overhead" in sys.argv:
        med = _overhead()
        print(f"spawn + trivial sample, median of 10 each, interleaved: bwrap {1000 * med['bwrap']:.1f} ms, "
              f"no jail {1000 * med['none']:.1f} ms, ratio {med['bwrap'] / med['none']:.2f}x, "
              f"overhead {1000 * (med['bwrap'] - med['none']):.1f} ms per sample; load {os.getloadavg()[0]:.2f}")
