"""
Execution: run programs in the sandbox (eval/sandbox.py), one fresh process per sample, a thread
pool of workers (default: all cores), a verdict per test input.

    problems = make_problems("humaneval+")                 # benchmark records -> runnable problems
    ensure_expected(problems)                              # canonical outputs, cached on disk
    results = run_jobs([Job(problems[0], program, sample=0)])

How a program is judged (each benchmark's file in eval/tasks/ says exactly how):
  kind "diff"         differential testing: the program's output on each input of the problem's
                      groups (base, then plus) must match the canonical solution's, by the
                      benchmark's outputs_match (EvalPlus's rules for HumanEval(+) and MBPP(+),
                      EvoEval's for EvoEval); the first wrong or failing input ends the sample.
  kind "unittest"     BigCodeBench(-Hard): the task's unittest classes; every test method must pass.
Comparison happens in this process, which never runs sample code; the child only ships outputs,
each marshalled on its own (over 1 MB: raw bytes after a "B" frame): bytes equal to the
canonical's output are a match without decoding where the cache recorded that such an answer
matches (not for a NaN, which EvalPlus's == and allclose both reject); any other answer is
decoded and judged by the benchmark's rule.

Expected outputs: the canonical solutions of the differential-testing benchmarks run in batches,
several to one sandbox process (trusted code, as EvalPlus runs all of them in its own process),
on the same pool as the samples and with no barrier between the two: a problem's samples are
queued as soon as its canonical has run (see _schedule). A probe first runs each canonical on one
input, only to order them longest first. A model's sample always runs alone.

What this process holds: the problems and their marshalled inputs, the messages of the samples
in flight, and the expected-output records used last (at most RECENT_MB; the rest stay on disk).

Time limits (EvalPlus's scheme): per input max(floor, factor * canonical time), capped; the sample
as a whole is capped too. BigCodeBench's (its untrusted_check): the whole suite max(240 s, canonical
time) + 1 s. The child enforces per-input limits with a timer, and this process kills
the child's whole process group when it makes no progress for longer than that (a hang inside C
code, a sample that swallows the timer).
"""
import atexit
import fcntl
import hashlib
import importlib.util
import heapq
import marshal
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from queue import SimpleQueue
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from eval.tasks import TASKS, equality_oracle, make_problems, outputs_match  # noqa: F401 - re-exported
from eval.jail import SAMPLE_DIR, jail_command, mode as jail_mode, python as jail_python

SANDBOX = Path(__file__).with_name("sandbox.py")
EXPECTED_VERSION = 4  # bump when what the expected-output cache holds changes (v3: wall seconds, v4: outputs as bytes)


@dataclass
class Limits:
    factor: float = 4.0        # per-input limit = max(floor, factor * canonical wall time) (EvalPlus) ...
    floor: float = 1.0         # ... seconds ...
    cap: float = 60.0          # ... and each input group (base, plus) gets min(cap, sum of its limits) + 1 s
    sample_cap: float = 240.0  # wall-clock cap for one sample, all its inputs together
    bcb_timeout: float = 240.0  # BigCodeBench: the whole test suite gets max(this, canonical's time) + 1 s (its TIMEOUT_LIMIT)
    load: float = 10.0         # defining the program (module-level code)
    memory_mb: int = 4096      # RLIMIT_AS of the child (which holds one task's inputs, nothing more)
    fsize_mb: int = 256
    nproc: int = 4096          # RLIMIT_NPROC (per user, binds for non-root only: a backstop; the guards count)
    max_procs: int = 64        # process creations per BigCodeBench sample (counted by the guards)
    disk_mb: int = 512         # jailed (eval/jail.py): size of the sample's own dir, and of BigCodeBench's private /tmp


# ---------------------------------------------------------------------------- problems
# What each benchmark's problems are, its prompt and its oracle: eval/tasks/ (one file each).
# make_problems, TASKS and outputs_match are re-exported here for the callers of eval.execute.


def missing_modules(problem: dict) -> list[str]:
    """Modules a BigCodeBench task needs that this Python cannot import (the task is then skipped)."""
    import importlib.util
    out = []
    for m in problem.get("imports", []):
        if m in sys.stdlib_module_names:
            continue
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except (ImportError, ValueError):
            out.append(m)
    return out


def is_stdlib_only(problem: dict) -> bool:
    return all(m in sys.stdlib_module_names for m in problem.get("imports", []))


def _not_none(problem):
    """MBPP+ tasks whose answer is judged only as found / not found (the child ships `is not None`)."""
    return bool(problem.get("not_none"))


# ---------------------------------------------------------------------------- the child process
def _child_env(tmp):
    # the running interpreter's directory first: BigCodeBench tests call `python` in subprocesses,
    # and a machine may have only python3 on its PATH
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")])
    env = {"PATH": path, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMEXPR_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "3", "TOKENIZERS_PARALLELISM": "false"}
    return env


_HARNESS = {}  # (mtime, size) of eval/sandbox.py -> its compiled file, in a private temp dir of this process
_harness_lock = threading.Lock()


def harness_file() -> str:
    """eval/sandbox.py compiled once per evaluator process (and again if the file changes): Python
    compiles a script given on its command line at every start, 10 ms of each sample's process."""
    st = SANDBOX.stat()
    key = (st.st_mtime_ns, st.st_size)
    with _harness_lock:
        if key not in _HARNESS:
            src = SANDBOX.read_bytes()
            d = tempfile.mkdtemp(prefix="snowcoder_harness_")
            atexit.register(shutil.rmtree, d, True)
            path = os.path.join(d, "sandbox.pyc")
            # compiled under the file's own name: the harness knows its frames by __file__
            code = compile(src, path, "exec", dont_inherit=True)
            # the layout python runs a .pyc by: magic, flags (0), mtime, size, the marshalled code
            with open(path + ".tmp", "wb") as f:
                f.write(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))
            os.replace(path + ".tmp", path)
            _HARNESS[key] = path
        return _HARNESS[key]


_SHAPES = {"R": 7, "T": 6, "L": 2, "S": 2, "D": 3, "P": 2, "B": 2}  # message kind -> tuple length


def run_sandboxed(payload: dict, progress_limit: float, total_limit: float, on_message=None, jail=None,
                  disk_mb=Limits.disk_mb):
    """Run one program in a fresh sandbox process: jailed by bubblewrap (eval/jail.py) when this
    machine allows it (jail=None: jail.mode() decides), the in-process guards inside it either way.
    `on_message(msg)` sees each message as it arrives and may return True to stop the child early.
    Returns (messages, info) where info has rc, killed ("progress" | "total" | "early" | None),
    seconds, stderr tail, sandbox (the mode it ran in)."""
    payload = dict(payload, nonce=secrets.token_hex(16))
    disk_mb = payload.pop("disk_mb", disk_mb)
    jailed = jail_mode() == "bwrap" if jail is None else jail
    payload["jailed"] = jailed  # the child then leaves the network to the jail's own namespace
    err = tempfile.TemporaryFile()
    r, w = os.pipe()
    try:  # 1 MB rather than 64 KB: a large answer crosses in 16x fewer wake-ups
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):
        pass
    t0 = time.monotonic()
    if jailed:
        # the sample dir is a tmpfs inside the jail (nothing on this disk to clean up or to be
        # written late); BigCodeBench's extra write root, the system temp dir, is the jail's private /tmp
        tmp = None
        if payload.get("write_roots"):
            payload["write_roots"] = ["/tmp"]
        harness = harness_file()
        argv, jfds = jail_command([jail_python(), "-I", harness, str(w)], _child_env(SAMPLE_DIR), disk_mb,
                                  private_tmp=bool(payload.get("write_roots")), bind=[harness])
        cwd, env = "/", _child_env(SAMPLE_DIR)
    else:
        tmp = tempfile.mkdtemp(prefix="snowcoder_sbx_")  # no "-": a BigCodeBench test splits paths on it
        argv, jfds = [sys.executable, "-I", harness_file(), str(w)], ()
        cwd, env = tmp, _child_env(tmp)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=env,
                                pass_fds=(w, *jfds), start_new_session=True, close_fds=True)
    except BaseException:
        os.close(r), err.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fd in (w, *jfds):
            os.close(fd)
    msgs, killed, buf, bad_message = [], None, bytearray(), False
    # a "B" frame's raw bytes (a large value): [the buffer they go to, bytes filled], then the value
    # waiting for its "R" message; the most a child may announce is what its memory limit allows
    raw, blob, most = None, None, (payload.get("memory_mb") or 65536) << 20
    try:
        try:  # the child reads all of stdin first, so this cannot deadlock
            proc.stdin.write(marshal.dumps(payload))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        last = time.monotonic()
        deadline_total = t0 + total_limit
        eof = False
        while not eof:
            now = time.monotonic()
            wait = min(last + progress_limit, deadline_total) - now
            if wait <= 0:
                killed = "total" if now >= deadline_total else "progress"
                break
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                continue
            if raw is not None:  # straight into the value's own buffer: no copy through `buf`
                got = os.readv(r, [memoryview(raw[0])[raw[1]:]])
                if not got:
                    break  # the child went away inside a value: not finished
                raw[1] += got
                last = time.monotonic()
                if raw[1] < len(raw[0]):
                    continue
                blob, raw = raw[0], None
            else:
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    eof = True
                buf += chunk
            stop = False
            while len(buf) >= 4 and raw is None:
                n = int.from_bytes(buf[:4], "little")
                if len(buf) < 4 + n:
                    break
                try:
                    msg = marshal.loads(bytes(buf[4:4 + n]))
                    ok = type(msg) is tuple and len(msg) == _SHAPES.get(msg[0], -1)
                    if ok and msg[0] == "B":  # a value's raw bytes follow (eval/sandbox.py's send_value)
                        ok = type(msg[1]) is int and 0 < msg[1] <= most and blob is None
                    elif ok and msg[0] == "R" and msg[3] == "ok" and msg[4] is None:
                        ok, msg, blob = blob is not None, (*msg[:4], blob, *msg[5:]), None
                except Exception:
                    ok = False
                del buf[:4 + n]
                if not ok:  # not something the harness sends: the sample wrote to our channel
                    bad_message, stop = True, True
                    break
                if msg[0] == "B":
                    take = min(msg[1], len(buf))
                    raw = [bytearray(msg[1]), take]
                    raw[0][:take] = buf[:take]
                    del buf[:take]
                    if take == msg[1]:
                        blob, raw = raw[0], None
                msgs.append(msg)
                last = time.monotonic()
                try:
                    if on_message is not None and on_message(msg):
                        stop = True
                        break
                except Exception:  # e.g. an index that does not exist: forged
                    bad_message, stop = True, True
                    break
            if stop:
                killed = "forged" if bad_message else "early"
                break
    finally:
        os.close(r)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started in its group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        err.seek(0, 2)
        err.seek(max(0, err.tell() - 2000))
        tail = err.read().decode("utf-8", "replace")
        err.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    # finished: our own final message, with our nonce, after exactly the messages the harness sent
    done = next((i for i, m in enumerate(msgs) if m[0] == "D"), None)
    finished = done is not None and msgs[done][1:] == (payload["nonce"], done) and not bad_message
    msgs = msgs[:done] if done is not None else msgs
    return msgs, dict(rc=proc.returncode, killed=killed, seconds=time.monotonic() - t0, stderr=tail, finished=finished,
                      forged=bad_message or (done is not None and not finished), sandbox="bwrap" if jailed else "none")


# ---------------------------------------------------------------------------- expected outputs
def cache_root() -> Path:
    return Path(os.environ.get("SNOWCODER_CACHE", Path.home() / ".cache" / "snowcoder"))


def _expected_path(problem) -> Path:
    safe = problem["task_id"].replace("/", "_")
    kind = problem["kind"]
    return cache_root() / "expected" / f"{problem['dataset']}-{kind}-{problem['dhash']}-v{EXPECTED_VERSION}" / f"{safe}.marshal"


def _input_blobs(problem, group):
    """Each input list, marshalled once (the child unmarshals a fresh copy per call)."""
    key = "_blobs_" + group
    if key not in problem:
        problem[key] = [marshal.dumps(list(a) if isinstance(a, list) else a) for a in problem[group + "_input"]]
    return problem[key]


def _expected_program(problem, limits, scale):
    """The payload that runs a canonical solution once for its outputs and times: generous fixed
    limits (the canonical is trusted), stretched on a loaded machine like the samples'."""
    if problem["kind"] == "diff":
        groups = [dict(kind="inputs", inputs=_input_blobs(problem, g), limits=[scale * 60.0] * len(problem[g + "_input"]),
                       fatal=False, not_none=_not_none(problem)) for g in ("base", "plus")]
    else:
        groups = [dict(kind="unittest", test=problem["test"], limit=scale * 600.0)]
    return dict(mode="func" if problem["kind"] != "unittest" else "unittest", code=problem["canonical"],
                entry_point=problem["entry_point"], groups=groups, memory_mb=limits.memory_mb,
                fsize_mb=limits.fsize_mb, nproc=limits.nproc, load_limit=scale * 60.0,
                allow_procs=problem["kind"] == "unittest", max_procs=limits.max_procs,
                module_name="__test__" if problem["kind"] == "unittest" else "solution",
                write_roots=_write_roots(problem), disk_mb=limits.disk_mb)


def _expected_record(problem, msgs, info, limits, scale, seconds):
    """The record to cache from one canonical's messages (group indices local to it). The times are
    wall seconds at this load: stored with its factor, so that a later run (another load) scales
    limits from the idle-machine time, not from this run's."""
    rec = dict(errors=[], seconds=seconds, load_scale=scale)
    if problem["kind"] == "diff":
        rec["errors"] += [f"did not load: {m[1][-300:]}" for m in msgs if m[0] == "L"]
        for gi, g in enumerate(("base", "plus")):
            n = len(problem[g + "_input"])
            outs, times = [None] * n, [limits.cap] * n
            got = 0
            same = [False] * n
            for m in msgs:
                if m[0] == "R" and m[1] == gi:
                    _, _, i, status, val, dt, exact = m
                    times[i] = dt
                    got += 1
                    if status == "ok":
                        outs[i] = val  # marshalled, as the child sent it
                        # does an output with these very bytes match? (not when it holds a NaN, or
                        # where the task's oracle says otherwise): then equal bytes need no decoding.
                        # Without a NaN anywhere (the harness says so, for this trusted canonical)
                        # the answer equals a decoded copy of itself, and with EvalPlus's equality
                        # as the oracle it then matches; else ask the oracle
                        if exact is True and equality_oracle(problem):
                            same[i] = True
                            continue
                        try:
                            same[i] = bool(outputs_match(marshal.loads(val), marshal.loads(val), problem,
                                                         problem[g + "_input"][i]))
                        except Exception:
                            pass
                    else:
                        rec["errors"].append(f"{g}[{i}]: {status}: {str(val)[-300:]}")
            if got < n:
                rec["errors"].append(f"{g}: only {got}/{n} inputs ran ({_why(msgs, info)})")
            rec[g], rec[g + "_time"], rec[g + "_same"] = outs, times, same
    else:
        ok = info["finished"]
        bad = [m for m in msgs if (m[0] == "R" and m[3] != "ok") or (m[0] == "T" and m[3] != "ok") or m[0] == "L"]
        for m in bad:
            rec["errors"].append(str(m[1] if m[0] == "L" else m[2:5])[-500:])
        if not ok:
            rec["errors"].append(f"did not finish ({_why(msgs, info)})")
        rec["time"] = info["seconds"]
    return rec


def expected_job(problem: dict, limits: Limits):
    """Run the canonical solution once, alone in its sandbox, recording outputs and times. Returns
    the record to cache."""
    scale = load_scale()
    payload = _expected_program(problem, limits, scale)
    msgs, info = run_sandboxed(payload, progress_limit=scale * (120.0 if problem["kind"] == "diff" else 660.0),
                               total_limit=scale * 1800.0)
    return _expected_record(problem, msgs, info, limits, scale, info["seconds"])


def expected_batch(problems: list[dict], limits: Limits, on_record=None) -> list:
    """The canonical solutions of several differential-testing problems run one after another in one
    sandbox process (a fresh module each), as EvalPlus computes all its expected outputs in one
    process: a process start costs more than most canonicals' whole run. Trusted code only: a
    model's sample always gets a process of its own. Returns a record per problem, or None for
    one the process did not finish (it died or was killed there: rerun it alone).
    `on_record(problem, record)` is called (in this thread) as soon as each one is known, while
    the batch runs on: a program is finished when the next one starts, the last at the end."""
    scale = load_scale()
    progs = [_expected_program(p, limits, scale) for p in problems]
    common = {k: v for k, v in progs[0].items() if k not in ("code", "entry_point", "groups", "load_limit")}
    payload = dict(common, mode="batch", programs=[{k: pr[k] for k in ("mode", "code", "entry_point", "groups",
                                                                        "load_limit", "module_name")} for pr in progs])
    g0 = [sum(len(pr["groups"]) for pr in progs[:k]) for k in range(len(progs))]  # group numbers run on
    seen, marks, out = [], [], [None] * len(problems)  # messages so far; (first message, time) per "P"

    def finish(k, hi, t1, info):  # program k's record, from its messages seen[marks[k][0]:hi]
        own = [(m[0], m[1] - g0[k], *m[2:]) if m[0] == "R" else m for m in seen[marks[k][0]:hi]]
        out[k] = _expected_record(problems[k], own, info, limits, scale, t1 - marks[k][1])
        if on_record is not None:
            on_record(problems[k], out[k])

    def on_message(m):
        seen.append(m)
        if m[0] == "P":
            if m[1] != len(marks):
                raise ValueError("program marks out of order")
            now = time.monotonic()
            if marks:  # the one before ran to its end
                finish(len(marks) - 1, len(seen) - 1, now, dict(rc=None, killed=None, forged=False, stderr="",
                                                                 finished=True))
            marks.append((len(seen), now))
        return False
    msgs, info = run_sandboxed(payload, progress_limit=scale * 120.0, total_limit=scale * 1800.0 * len(problems),
                               on_message=on_message)
    if marks and info["finished"]:  # the last one, when the whole batch ran to its end
        finish(len(marks) - 1, len(msgs), time.monotonic(), dict(info, finished=True, killed=None))
    return out


def _why(msgs, info):
    if info.get("forged"):
        return "the run's final message was forged or messages were injected"
    if info["killed"]:
        return f"killed: no progress within the limit" if info["killed"] == "progress" else f"killed: {info['killed']}"
    if info["rc"] not in (0, None):
        return f"exit status {info['rc']}" + (f", stderr: {info['stderr'][-300:]}" if info["stderr"].strip() else "")
    return "exited before the end" + (f", stderr: {info['stderr'][-300:]}" if info["stderr"].strip() else "")


_UNCACHED = {}  # expected-output path -> a record with errors, kept for this process only


_RECENT, _RECENT_BYTES = OrderedDict(), [0]  # path -> (record, size, mtime of its file): the last ones used
_recent_lock = threading.Lock()
RECENT_MB = 1024  # at most this much of them kept in memory (the largest record, MBPP/255's, is 650 MB)


def _remember(path, rec, st):
    size = st.st_size
    with _recent_lock:
        if path in _RECENT:
            _RECENT_BYTES[0] -= _RECENT.pop(path)[1]
        _RECENT[path] = (rec, size, st.st_mtime_ns)
        _RECENT_BYTES[0] += size
        while _RECENT_BYTES[0] > RECENT_MB << 20 and len(_RECENT) > 1:
            _RECENT_BYTES[0] -= _RECENT.popitem(last=False)[1][1]


def load_expected(problem):
    """The cached record of a problem's canonical: from memory when it was stored or loaded lately
    (a sample is judged soon after its canonical ran; a task's samples one after another), else
    from disk."""
    p = _expected_path(problem)
    if p in _UNCACHED:
        return _UNCACHED[p]
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    with _recent_lock:
        hit = _RECENT.get(p)
        if hit is not None and hit[1:] == (st.st_size, st.st_mtime_ns):  # the file as it was read or written
            _RECENT.move_to_end(p)
            return hit[0]
    with open(p, "rb") as fh:
        st = os.fstat(fh.fileno())
        rec = marshal.loads(fh.read())
    _remember(p, rec, st)
    return rec


def _store_expected(p, rec):
    path = _expected_path(p)
    if rec["errors"] and p["kind"] == "diff":
        # a canonical that failed an input (killed on a loaded machine, say) would make every
        # later run judge against a hole: use it in this run, say so, and recompute next time
        print(f"expected outputs: {p['task_id']}: canonical failed ({rec['errors'][0][:200]}); "
              "not cached, recomputed on the next run", file=sys.stderr)
        _UNCACHED[path] = rec
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(marshal.dumps(rec))
    st = tmp.stat()
    tmp.replace(path)  # same file, same size and mtime
    _remember(path, rec, st)


def _needs_expected(p) -> bool:
    return not _expected_path(p).exists() and _expected_path(p) not in _UNCACHED and not missing_modules(p)


def _probe_costs(problems: list[dict], limits: Limits, workers: int) -> dict:
    """A first look used only to order the real pass: each canonical run on one input (its first
    plus input, else its first base input), `workers` batches at once, nothing kept. Returns
    id(problem) -> that input's seconds x the problem's number of inputs (an estimate of its whole
    run); a problem the probe could not time is left out (its batch died: run it early)."""
    def one(ps):
        probes, recs = [], {}
        for p in ps:
            inp = (p["plus_input"] or p["base_input"])[:1]
            probes.append(dict({k: v for k, v in p.items() if not k.startswith("_blobs_")}, base_input=inp, plus_input=[]))
        _expected_records(probes, limits, lambda q, rec: recs.__setitem__(id(q), rec))
        return {id(p): rec["base_time"][0] * (len(p["base_input"]) + len(p["plus_input"]))
                for p, q in zip(ps, probes) if (rec := recs.get(id(q))) and not rec["errors"] and rec["base_time"]}
    n = -(-len(problems) // workers)
    est = {}
    with ThreadPoolExecutor(workers) as ex:
        for part in ex.map(one, [problems[i:i + n] for i in range(0, len(problems), n)]):
            est.update(part)
    return est


def _expected_work(todo: list[dict], workers: int, est=None) -> list[list[dict]]:
    """The canonicals to run, as batches for one sandbox process each: differential-testing ones in
    about 6 batches per worker (enough to keep every worker busy to the end), BigCodeBench ones
    alone (their tests start processes and write /tmp). With cost estimates (`est`, from
    _probe_costs), the longest first, each batch about a sixth of a worker's share and a canonical
    longer than that alone: a long canonical unlocks a long sample, the run's critical path."""
    diff = [p for p in todo if p["kind"] == "diff"]
    rest = [[p] for p in todo if p["kind"] != "diff"]
    n = max(1, min(len(diff), 6 * workers))
    if not est:
        size = -(-len(diff) // n) if diff else 1
        return [diff[i:i + size] for i in range(0, len(diff), size)] + rest
    top = max(est.values(), default=0.0) + 1.0
    cost = {id(p): est.get(id(p), top) for p in diff}  # not timed by the probe: as if the longest
    target, size = sum(cost.values()) / n, -(-len(diff) // n)
    batches, cur, acc = [], [], 0.0
    for p in sorted(diff, key=lambda p: -cost[id(p)]):
        cur.append(p)
        acc += cost[id(p)]
        if acc >= target or len(cur) >= size:
            batches.append(cur)
            cur, acc = [], 0.0
    return batches + ([cur] if cur else []) + rest


def _expected_records(batch, limits, on_record):
    """Expected outputs for a batch, each handed to on_record as soon as it is known; returns the
    problems the batch did not finish."""
    if len(batch) > 1:
        return [p for p, rec in zip(batch, expected_batch(batch, limits, on_record)) if rec is None]
    on_record(batch[0], expected_job(batch[0], limits))
    return []


def _schedule(todo: list[dict], jobs: list, limits: Limits, workers: int, on_result, desc: str) -> list:
    """Compute the expected outputs `todo` needs and judge `jobs`, on one pool of `workers` threads
    with no barrier between the two: a problem's samples are queued as soon as its canonical has
    run (inside its batch, not at the batch's end), longest canonical first (longest-processing-time
    order, from the canonical's own time). A free worker takes a batch of canonicals (each unlocks
    samples) unless the longest waiting sample is expected to take longer than a batch has so far:
    that sample is the run's critical path (MBPP+'s Mbpp/599 runs 20 s)."""
    todo_ids, waiting = {id(p) for p in todo}, {}  # problem -> its jobs, until its canonical has run
    for j in jobs:
        if id(j.problem) in todo_ids:
            waiting.setdefault(id(j.problem), []).append(j)
    ready, seq = [], 0  # heap of (-canonical seconds, order, job)

    def queue(js, seconds=0.0):  # cached before this run: in the order given
        nonlocal seq
        for j in js:
            heapq.heappush(ready, (-seconds, seq, j))
            seq += 1
    queue([j for j in jobs if id(j.problem) not in waiting])
    diff = [p for p in todo if p["kind"] == "diff"]
    work = _expected_work(todo, workers, _probe_costs(diff, limits, workers) if len(diff) > 2 * workers else None)
    out, inflight, records = [], {}, SimpleQueue()  # records: (problem, record) from the workers
    batch_s = []  # wall seconds of each finished batch of canonicals
    bar = tqdm(total=len(jobs) + len(todo), desc=desc, leave=False)

    def take_records():
        while not records.empty():
            p, rec = records.get()
            _store_expected(p, rec)
            bar.update(1)
            queue(waiting.pop(id(p), []), rec["seconds"])
    with ThreadPoolExecutor(workers) as ex:
        while work or ready or inflight:
            while len(inflight) < workers and (work or ready):
                long_sample = ready and batch_s and -ready[0][0] > sum(batch_s) / len(batch_s)
                if work and not long_sample:  # canonicals first: each one unlocks its samples
                    batch = work.pop(0)
                    inflight[ex.submit(_expected_records, batch, limits, lambda p, rec: records.put((p, rec)))] = (
                        "expected", (batch, time.monotonic()))
                else:
                    j = heapq.heappop(ready)[2]
                    inflight[ex.submit(judge, j, limits)] = ("judge", j)
            # woken by a finished job, or within 50 ms by a canonical finished inside a running batch
            done, _ = wait(list(inflight), timeout=0.05, return_when=FIRST_COMPLETED)
            take_records()  # a batch hands over each record before it returns: all of done's are here
            for f in done:
                kind, what = inflight.pop(f)
                if kind == "judge":
                    v = f.result()
                    out.append(v)
                    if on_result is not None:
                        on_result(v)
                    bar.update(1)
                    continue
                lost = f.result()  # not run to its end: the batch's process died there or before
                batch_s.append(time.monotonic() - what[1])
                # the one it died on, alone (its own verdict on what went wrong); the rest batched again
                work[:0] = [b for b in (lost[:1], lost[1:]) if b]
    bar.close()
    return out


def ensure_expected(problems: list[dict], limits: Limits = None, workers: int = None, desc="expected outputs"):
    """Compute (once; cached on disk under the dataset's md5) what the canonical solutions return
    and how long they take. BigCodeBench tasks with missing modules are left out."""
    todo = [p for p in problems if _needs_expected(p)]
    if todo:
        _schedule(todo, [], limits or Limits(), workers or os.cpu_count() or 1, None, desc)


# ---------------------------------------------------------------------------- judging one sample
@dataclass
class Job:
    problem: dict
    program: str
    sample: int = 0
    extra: dict = field(default_factory=dict)  # carried into the verdict (e.g. the raw completion)


def _write_roots(problem):
    """Where a sample may change files besides its own directory: BigCodeBench tests hard-code
    /tmp/... paths, so that benchmark also gets the system temp dir; the others get nothing."""
    return [tempfile.gettempdir()] if problem["kind"] == "unittest" else []


def load_scale() -> float:
    """How much slower than idle this machine runs now: the 1-minute load average per core, at
    least 1. Wall-clock limits are multiplied by it so a loaded machine does not fail correct code."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        return 1.0


def _limit(t, limits):
    return min(limits.cap, max(limits.floor, limits.factor * t))


def _short(x, n=300):
    s = repr(x)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def judge(job: Job, limits: Limits = None) -> dict:
    """Run one program against its problem's tests. Returns the verdict record (never raises
    because of what the program did)."""
    try:
        return _judge(job, limits)
    except Exception as e:  # a harness bug must cost one verdict, not the run
        import traceback
        return dict(task=job.problem["task"], task_id=job.problem["task_id"], sample=job.sample, **job.extra,
                    status="error", passed=False, verdicts={},
                    first_failure=dict(group="harness", error=traceback.format_exc()[-1500:]), seconds=0.0)


def _judge(job: Job, limits: Limits = None) -> dict:
    limits = limits or Limits()
    p = job.problem
    v = dict(task=p["task"], task_id=p["task_id"], sample=job.sample, **job.extra)
    if p["kind"] == "unittest" and (miss := missing_modules(p)):
        return dict(v, status="skipped", passed=None, reason="missing modules: " + ", ".join(miss))
    exp = load_expected(p)
    # defining the program (imports: pandas + matplotlib take seconds of wall time on a loaded machine)
    # gets the same load stretch as every other wall-clock limit
    load = load_scale() * limits.load
    common = dict(mode="func" if p["kind"] != "unittest" else "unittest", code=job.program,
                  entry_point=p["entry_point"], memory_mb=limits.memory_mb, fsize_mb=limits.fsize_mb,
                  nproc=limits.nproc, load_limit=load, allow_procs=p["kind"] == "unittest",
                  max_procs=limits.max_procs, module_name="__test__" if p["kind"] == "unittest" else "solution",
                  write_roots=_write_roots(p), disk_mb=limits.disk_mb)
    if p["kind"] == "diff":
        if exp is None:
            raise RuntimeError(f"{p['task_id']}: expected outputs missing; call ensure_expected first")
        gnames = p["groups"]
        groups, glimits = [], []
        scale = load_scale()
        for g in gnames:
            lim = [scale * _limit(t / exp.get("load_scale", 1.0), limits) for t in exp[g + "_time"]]
            glimits.append(lim)
            cap = scale * (min(limits.cap, sum(lim) / scale) + 1.0)  # EvalPlus: min(60, sum of limits) + 1 per group
            groups.append(dict(kind="inputs", inputs=_input_blobs(p, g), limits=lim, fatal=True, not_none=_not_none(p),
                               cap=cap))
        verdicts = {g: ["-"] * len(p[g + "_input"]) for g in gnames}
        first = {}

        def on_message(m):
            if m[0] != "R":
                return False
            _, gi, i, status, val, dt, _ = m  # the child's `exact` is not trusted here
            g = gnames[gi]
            if status == "ok":
                e = exp[g][i]
                if not (val == e and exp[g + "_same"][i]):  # equal bytes: equal values, known to match
                    val, e = marshal.loads(val), marshal.loads(e)
                    ok = outputs_match(val, e, p, p[g + "_input"][i])
                else:
                    ok = True
                verdicts[g][i] = "." if ok else "F"
                if not ok and not first:
                    first.update(group=g, index=i, input=_short(p[g + "_input"][i]), expected=_short(e), got=_short(val))
                return not ok  # a wrong output ends the sample (the later groups depend on this one)
            verdicts[g][i] = {"err": "E", "timeout": "T", "type": "X"}.get(status, "E")
            if not first:
                first.update(group=g, index=i, input=_short(p[g + "_input"][i]), error=str(val or status)[-1500:])
            return True
        # backstops for what the child's own timers cannot stop (3x: timers count CPU, these wall time)
        progress = 3 * max([max(l, default=limits.floor) for l in glimits] + [load]) + 10.0
        cpu = min(limits.sample_cap, load + sum(sum(l) for l in glimits)) + 5.0
        msgs, info = run_sandboxed(dict(common, groups=groups, cpu_s=cpu), progress, 3 * cpu + 10.0, on_message)
        loaded = any(m[0] == "S" for m in msgs)
        done = info["finished"]
        load_err = next((m[1] for m in msgs if m[0] == "L"), None)
        if load_err is not None:
            first.update(error=load_err[-1500:], group="load")
        elif not first and not done:
            # the child went away (os._exit, a crash, a kill) or hung: blame the input it was on
            for g in gnames:
                if "-" in verdicts[g]:
                    i = verdicts[g].index("-")
                    verdicts[g][i] = "T" if info["killed"] in ("progress", "total") else "K"
                    first.update(group=g, index=i, input=_short(p[g + "_input"][i]), error=_why(msgs, info))
                    break
            else:
                first.update(group="exit", error=_why(msgs, info))
        passed = done and not first and all(c == "." for g in gnames for c in verdicts[g])
        status = "pass" if passed else ("timeout" if any("T" in verdicts[g] for g in gnames) else
                                        "error" if load_err or not loaded else "fail")
        v.update(status=status, passed=passed, verdicts={g: "".join(verdicts[g]) for g in gnames})
    else:  # unittest
        t = exp["time"] / exp.get("load_scale", 1.0) if exp and not exp["errors"] else None
        # BigCodeBench's untrusted_check: max(TIMEOUT_LIMIT, max(min_time_limit, canonical time)) + 1,
        # its canonical time taken as 20 s when unknown: the suite's limit is the canonical's time
        # only when that is longer than TIMEOUT_LIMIT
        lim = load_scale() * (max(limits.bcb_timeout, t or 0.0) + 1.0)
        # backstops for a hang the child's timers cannot stop (they count wall time here, as this
        # does): half as long again as the suite and its load, not 3x (a 241 s suite hung in C code
        # would hold a worker for 12 minutes)
        back = 1.5 * (lim + load) + 10.0
        msgs, info = run_sandboxed(dict(common, groups=[dict(kind="unittest", test=p["test"], limit=lim)]),
                                   back, back + 10.0)
        tests = [m for m in msgs if m[0] == "T"]
        load_err = next((m[1] for m in msgs if m[0] == "L"), None)
        done = info["finished"]
        bad = [m for m in tests if m[3] != "ok"]
        passed = bool(tests) and not bad and done and load_err is None
        first = {}
        if load_err is not None:
            first = dict(group="load", error=load_err[-1500:])
        elif bad:
            first = dict(group="unittest", test=bad[0][2], error=(bad[0][4] or bad[0][3])[-1500:])
        elif not done or not tests:
            first = dict(group="exit", error=_why(msgs, info))
        status = "pass" if passed else ("timeout" if info["killed"] or any(m[3] == "timeout" for m in bad) else
                                        "error" if load_err else "fail")
        v.update(status=status, passed=passed, verdicts={"tests": "".join("." if m[3] == "ok" else "F" for m in tests)},
                 tests=[m[2] for m in tests])
    if first:
        v["first_failure"] = first
    v["seconds"] = round(info["seconds"], 3)
    return v


def run_jobs(jobs: list[Job], limits: Limits = None, workers: int = None, on_result=None, desc="executing",
             time_unittests: bool = True):
    """Judge every job on a pool of `workers` threads, each driving one sandbox process at a time,
    computing the expected outputs still missing on the same pool (see _schedule). `on_result(verdict)`
    is called in the main thread as each finishes (append it to a file there). time_unittests=False
    skips timing BigCodeBench canonicals first (their limit is then Limits.bcb_timeout + 1 s): what a
    ground-truth run wants, as it runs the canonicals anyway."""
    limits = limits or Limits()
    jail_mode()  # probed here, in this thread: SNOWCODER_SANDBOX=bwrap without a working jail stops the run
    probs = list({id(j.problem): j.problem for j in jobs}.values())
    todo = [p for p in probs if (time_unittests or p["kind"] != "unittest") and _needs_expected(p)]
    return _schedule(todo, jobs, limits, workers or os.cpu_count() or 1, on_result, desc)


def program_hash(program: str) -> str:
    return hashlib.sha1(program.encode()).hexdigest()[:16]
