"""``make mutation``: cosmic-ray over fastbp's arithmetic and state, module by module, each mutant run against only the
tests that cover its module, in clones of the last commit (the working tree is never mutated).

    python -m tests.mutation [--minutes M] [--workers W] [fastbp/io.py ...]   # every module of MODULES by default

The whole list is ~5,400 mutants and a mutant of a file the kernels compile from would recompile them (30-270 s);
those modules' mutants therefore run their tests with ``NUMBA_DISABLE_JIT=1`` (INTERPRETED), as Python. A complete
run still takes days on 2 cores. The sessions therefore keep: ``.mutation/`` holds one cosmic-ray database per
module, and each run goes on where the last stopped, in cosmic-ray's random order, so the mutants tested so far are a
uniform sample of the module's. ``--minutes`` shares that time among the modules (their order shuffled; ``--workers``
clones run side by side, each with its own warm Numba cache). A module whose source changed is started afresh; its
survivors are tested again first on every run, since the tests may have grown since (until then they count as
survivors). Each module's tests first run on the unmutated clone: a test failing there would count every mutant it
reaches as killed, so such a module is left out and the run exits 1.

Prints a table (module, mutants, tested, killed, survived, incompetent, the score killed / (killed + survived) with
its 95% Wilson interval, and the CPU hours every run has spent) and writes each module's
surviving mutants, with their diffs, to ``.mutation/<module>.survivors.txt``. Operators are cosmic-ray's core ones
minus those that cannot be told apart in this code (bitwise and shift operators, ``is``/``in`` swaps; see
OPERATORS_EXCLUDED).
"""

import argparse
import hashlib
import os
import pathlib
import queue
import random
import re
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from tests.test_interpreted import COVERAGE_SLICE

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / ".mutation"
# module: the tests that cover it, the quickest to fail first (pytest -x stops a mutant at its first failing test)
MODULES = {
    # io.py also holds load_state_dict (test_network, test_golden) and reads old files (test_schedules)
    "fastbp/io.py": ["tests/test_io.py", "tests/test_pinned.py", "tests/test_schedules.py", "tests/test_network.py",
                     "tests/test_golden.py"],
    "fastbp/schedules.py": ["tests/test_schedules.py", "tests/test_golden.py"],
    "fastbp/optim.py": ["tests/test_golden.py", "tests/test_kernels.py", "tests/test_schedules.py",
                        "tests/test_properties.py"],
    "fastbp/losses.py": ["tests/test_golden.py", "tests/test_kernels.py", "tests/test_objectives.py",
                         "tests/test_properties.py"],
    "fastbp/activations.py": ["tests/test_golden.py", "tests/test_kernels.py", "tests/test_objectives.py",
                              "tests/test_properties.py"],
    "fastbp/kernels/generic.py": ["tests/test_golden.py", "tests/test_kernels.py", "tests/test_objectives.py",
                                  "tests/test_properties.py"],
    "fastbp/kernels/dense.py": ["tests/test_kernels.py", "tests/test_golden.py", "tests/test_objectives.py",
                                "tests/test_properties.py"],
    "fastbp/kernels/layout.py": ["tests/test_kernels.py", "tests/test_network.py", "tests/test_compiled.py",
                                 "tests/test_fuzz.py"],  # test_compiled: the generated kernels check inputs with it
    "fastbp/kernels/codegen.py": ["tests/test_compiled.py"],
    "fastbp/kernels/codegen_signature.py": ["tests/test_compiled.py", "tests/test_population_compiled.py"],
    "fastbp/kernels/population.py": ["tests/test_population.py"],
    "fastbp/kernels/codegen_population.py": ["tests/test_population_compiled.py"],
    "fastbp/kernels/estimator.py": ["tests/test_sklearn.py"],
    # training.py also holds ReduceOnPlateau's state (test_schedules, test_golden)
    "fastbp/training.py": ["tests/test_divergence.py", "tests/test_golden.py", "tests/test_pinned.py",
                           "tests/test_schedules.py", "tests/test_network.py"],
    "fastbp/distributed.py": ["tests/test_distributed.py"],
    "fastbp/population.py": ["tests/test_population.py", "tests/test_population_compiled.py"],
    "fastbp/sklearn_training.py": ["tests/test_sklearn.py"],
    "fastbp/plan.py": ["tests/test_plan.py", "tests/test_dispatch.py"],
    "fastbp/convert.py": ["tests/test_convert.py", "tests/test_onnx.py"],
    "fastbp/onnx/__init__.py": ["tests/test_onnx.py"],
    "fastbp/onnx/reader.py": ["tests/test_onnx.py"],
    "fastbp/onnx/writer.py": ["tests/test_onnx.py"],
}
# The kernel modules' mutants run under NUMBA_DISABLE_JIT=1: a mutant of a file the kernels compile from would
# otherwise recompile them (1-2 minutes each); as Python, the tests covering it take 20-120 s, and most mutants fail
# the first of them in seconds. Their tests narrow to those that run so.
INTERPRETED = {"fastbp/optim.py", "fastbp/losses.py", "fastbp/activations.py", "fastbp/schedules.py",
               "fastbp/kernels/generic.py", "fastbp/kernels/dense.py", "fastbp/kernels/layout.py",
               "fastbp/kernels/codegen.py", "fastbp/kernels/codegen_signature.py", "fastbp/kernels/population.py",
               "fastbp/kernels/codegen_population.py"}
OPERATORS_EXCLUDED = [
    "core/ReplaceBinaryOperator_.*_(FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)",
    "core/ReplaceBinaryOperator_(FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)_.*",
    "core/ReplaceComparisonOperator_.*_(Is|IsNot|In|NotIn)",
    "core/ReplaceComparisonOperator_(Is|IsNot|In|NotIn)_.*",
]
# The property tests again in a subprocess with a fresh cache and bounds checks: minutes of compiling per mutant, for
# what test_properties.py (listed where it matters) checks in-process.
DESELECTED = {"tests/test_kernels.py": "tests/test_kernels.py::test_property_tests_with_bounds_checking"}
MUTANT_TIMEOUT = 900.0  # seconds; a mutant that loops for ever counts as killed
TOOLS = pathlib.Path(sys.executable).parent
CPU_FILE = OUT / "cpu_seconds"  # the CPU time of every run's mutants, added up
RETEST = "CREATE TABLE IF NOT EXISTS retest (job_id VARCHAR PRIMARY KEY, diff TEXT)"  # survivors to test again
FAILED_BASELINES = []  # the modules whose tests failed on the unmutated code in this run


def test_command(module):
    """The command that tests a mutant of ``module``: its tests, -x (a mutant is killed at its first failure)."""
    tests, prefix = MODULES[module], ""
    if module in INTERPRETED:  # as Python: no compile per mutant, the tests that run so (tests/test_interpreted.py)
        prefix = "env NUMBA_DISABLE_JIT=1 "
        tests = [test for test in tests if pathlib.Path(test).name in COVERAGE_SLICE]
    tests = [*tests, *(f"--deselect {DESELECTED[test]}" for test in tests if test in DESELECTED)]
    return f"{prefix}{sys.executable} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"


def config(module):
    operators = OPERATORS_EXCLUDED
    if module in INTERPRETED:
        operators = [*operators, "core/RemoveDecorator"]  # Numba's decorators are no-ops as Python: unkillable so
    excluded = ",\n  ".join(f'"{pattern}"' for pattern in operators)
    return (f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {MUTANT_TIMEOUT}\nexcluded-modules = []\n'
            f'test-command = "{test_command(module)}"\n\n'
            f'[cosmic-ray.distributor]\nname = "local"\n\n'
            f'[cosmic-ray.filters.operators-filter]\nexclude-operators = [\n  {excluded},\n]\n')


def paths(module):  # its configuration, database, stamp and list of survivors
    name = module.replace("/", ".").removesuffix(".py")
    return tuple(OUT / f"{name}.{suffix}" for suffix in ("toml", "sqlite", "stamp", "survivors.txt"))


def prepare(module, checkout):
    """The module's database: made afresh when the module (in ``checkout``, a clone of the last commit) or its
    configuration changed, else its survivors (but those tests/MUTANTS.md lists as equivalent) reset to pending, so
    that this run tests them again, first (:func:`execute`)."""
    toml, db, stamp, _ = paths(module)
    text = config(module)
    digest = hashlib.sha256(text.encode() + (checkout / module).read_bytes()).hexdigest()
    if db.exists() and stamp.exists() and stamp.read_text() == digest:
        with sqlite3.connect(db) as con:  # kept in a table of ours: a survivor not yet tested again still counts
            con.execute(RETEST)
            patterns = equivalents()
            again = [(job,) for job, name, diff in con.execute(
                "SELECT r.job_id, s.definition_name, r.diff FROM work_results r JOIN mutation_specs s USING (job_id) "
                "WHERE r.test_outcome = 'SURVIVED'") if not is_equivalent(module, name, diff, patterns)]
            con.executemany("INSERT OR REPLACE INTO retest SELECT job_id, diff FROM work_results WHERE job_id = ?",
                            again)
            con.executemany("DELETE FROM work_results WHERE job_id = ?", again)
        return
    db.unlink(missing_ok=True)
    toml.write_text(text)
    subprocess.run([TOOLS / "cosmic-ray", "init", toml, db], cwd=checkout, check=True)
    subprocess.run([TOOLS / "cr-filter-operators", db, toml], cwd=checkout, check=True)
    with sqlite3.connect(db) as con:
        con.execute(RETEST)
    stamp.write_text(digest)


def clone(k):
    """Worker ``k``'s clone of the last commit, and its Numba cache (kept between runs: host-code mutants find the
    kernels compiled)."""
    path = OUT / f"clone-{k}"
    if not path.exists():
        subprocess.run(["git", "clone", "-q", ROOT, path], check=True)
    subprocess.run(["git", "fetch", "-q", ROOT, "HEAD"], cwd=path, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "FETCH_HEAD"], cwd=path, check=True)
    return path, OUT / f"cache-{k}"


def execute(module, where, seconds):
    """Test the module's pending mutants in ``where`` until they are done or ``seconds`` have passed."""
    path, cache = where
    toml, db, _, _ = paths(module)
    # PYTHONPATH: the tests' subprocesses (MPI ranks, writers, fresh-cache runs) import the clone's fastbp too, not
    # the one installed in the virtual environment
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(path))
    # The baseline: tests that fail on the unmutated code would count every mutant they reach as killed.
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        baseline = subprocess.run(shlex.split(test_command(module)), cwd=path, env=env, capture_output=True,
                                  text=True, timeout=seconds)
    except subprocess.TimeoutExpired:  # its share spent on the baseline: no mutant this run
        _kill_leftovers(env["PYTHONPATH"])
        return
    if baseline.returncode != 0:
        FAILED_BASELINES.append(module)
        print(f"{module}: its tests fail on the unmutated code, so no mutant of it is tested:\n"
              f"{baseline.stdout[-2000:]}", file=sys.stderr)
        return
    # The survivors first (cosmic-ray's random order might not reach them in this run): a copy of the database
    # holding only them, whose results join the module's before the other mutants run.
    retests = db.with_suffix(".retest.sqlite")
    for stale in (retests, retests.with_name(retests.name + "-journal")):  # a run killed midway
        stale.unlink(missing_ok=True)
    shutil.copyfile(db, retests)
    with sqlite3.connect(retests) as con:
        for table in ("mutation_specs", "work_items"):
            con.execute(f"DELETE FROM {table} WHERE job_id NOT IN (SELECT job_id FROM retest) "
                        "OR job_id IN (SELECT job_id FROM work_results)")
        pending = con.execute("SELECT COUNT(*) FROM work_items").fetchone()[0]
    if pending:
        _exec(toml, retests, path, env, None if deadline is None else deadline - time.monotonic())
        with sqlite3.connect(db) as con:
            con.execute("ATTACH DATABASE ? AS retests", (str(retests),))
            con.execute("INSERT OR IGNORE INTO work_results SELECT * FROM retests.work_results")
    retests.unlink()
    left = None if deadline is None else deadline - time.monotonic()
    if left is None or left > 30:
        _exec(toml, db, path, env, left)


def _exec(toml, db, path, env, seconds):
    """``cosmic-ray exec`` of the pending mutants of ``db`` in the clone ``path``, for at most ``seconds``."""
    proc = subprocess.Popen([TOOLS / "cosmic-ray", "exec", toml, db], cwd=path, env=env, start_new_session=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:  # the mutant under test is lost; the finished ones are in the database
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_leftovers(env["PYTHONPATH"])
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=path, check=True)  # undo a mutant left applied


def _kill_leftovers(pythonpath):
    """Kill what the killed run left behind in sessions of its own (an MPI job's ranks wait for ever for a rank that
    is gone): every process with this PYTHONPATH in its environment (Linux's /proc)."""
    mark = f"PYTHONPATH={pythonpath}".encode()
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:  # gone meanwhile, or not ours
            pass


def wilson(killed, n, z=1.96):
    """The Wilson score interval of a proportion killed / n (95% for z = 1.96): the mutants tested are a uniform
    sample of the module's (cosmic-ray's random order), so the module's score lies in it with that confidence."""
    if n == 0:
        return 0.0, 1.0
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def equivalents():
    """The equivalent mutants' patterns, tests/MUTANTS.md's ```equivalent block: (module, function, source line,
    mutated line[, a context line])."""
    text = (ROOT / "tests" / "MUTANTS.md").read_text()
    block = text.split("```equivalent\n", 1)[1].split("```", 1)[0]
    return [tuple(field.strip() for field in line.split(" | ")) for line in block.splitlines() if line.strip()]


def matches(text, pattern):
    """``pattern`` with ``*`` (any text) and ``?`` (one character) as wildcards, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text) is not None


def is_equivalent(module, function, diff, patterns):
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = next((line[1:].strip() for line in lines if line.startswith("-")), "")
    added = next((line[1:].strip() for line in lines if line.startswith("+")), "")
    context = {line[1:].strip() for line in lines if line.startswith(" ")}
    return any(matches(module, p[0]) and matches(function or "", p[1]) and matches(removed, p[2])
               and matches(added, p[3]) and (len(p) < 5 or p[4] in context) for p in patterns)


def tally(module):
    _, db, _, survivors_txt = paths(module)
    with sqlite3.connect(db) as con:
        total = con.execute("SELECT COUNT(*) FROM work_items").fetchone()[0]
        done = dict(con.execute("SELECT test_outcome, COUNT(*) FROM work_results WHERE worker_outcome != 'SKIPPED' "
                                "GROUP BY test_outcome").fetchall())
        skipped = con.execute("SELECT COUNT(*) FROM work_results WHERE worker_outcome = 'SKIPPED'").fetchone()[0]
        con.execute(RETEST)
        # the survivors: of this run, and of earlier runs not yet tested again in this one
        survivors = con.execute("SELECT s.definition_name, s.start_pos_row, s.operator_name, r.diff "
                                "FROM work_results r JOIN mutation_specs s USING (job_id) "
                                "WHERE r.test_outcome = 'SURVIVED' UNION ALL "
                                "SELECT s.definition_name, s.start_pos_row, s.operator_name, t.diff "
                                "FROM retest t JOIN mutation_specs s USING (job_id) "
                                "WHERE t.job_id NOT IN (SELECT job_id FROM work_results) "
                                "ORDER BY 2").fetchall()
    patterns, equivalent = equivalents(), 0
    with open(survivors_txt, "w") as f:
        for name, row, operator, diff in survivors:
            listed = is_equivalent(module, name, diff, patterns)
            equivalent += listed
            f.write(f"# {module}:{row} {name} {operator}{' (equivalent: tests/MUTANTS.md)' if listed else ''}\n"
                    f"{diff}\n")
    killed, incompetent = done.get("KILLED", 0), done.get("INCOMPETENT", 0)
    survived = len(survivors)
    return total - skipped, killed + survived + incompetent, killed, survived - equivalent, equivalent, incompetent


def report(modules):
    """The table: a module's score is killed / (killed + survived), its equivalent mutants left out."""
    print(f"{'module':38} {'mutants':>8} {'tested':>7} {'killed':>7} {'survived':>9} {'equivalent':>11} "
          f"{'incompetent':>12}  score %  95% interval")
    for module in modules:
        total, tested, killed, survived, equivalent, incompetent = tally(module)
        low, high = wilson(killed, killed + survived)
        print(f"{module:38} {total:8} {tested:7} {killed:7} {survived:9} {equivalent:11} {incompetent:12}  "
              f"{100 * killed / max(killed + survived, 1):7.1f}  {100 * low:.1f}-{100 * high:.1f}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES))
    parser.add_argument("--minutes", type=float, help="stop after this long (default: when every mutant is tested)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="print the last runs' table, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.modules)
    start = resource.getrusage(resource.RUSAGE_CHILDREN)
    OUT.mkdir(exist_ok=True)
    clones = [clone(k) for k in range(args.workers)]
    for module in args.modules:
        prepare(module, clones[0][0])
    todo = queue.Queue()
    for module in random.sample(args.modules, len(args.modules)):
        todo.put(module)
    share = None if args.minutes is None else 60 * args.minutes * args.workers / len(args.modules)
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes

    def work(where):
        while True:
            try:
                module = todo.get_nowait()
            except queue.Empty:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left < 30:
                return
            execute(module, where, None if share is None else min(share, left))

    workers = [threading.Thread(target=work, args=(where,)) for where in clones]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    report(args.modules)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = float(CPU_FILE.read_text()) if CPU_FILE.exists() else 0.0
    spent += used.ru_utime + used.ru_stime - (start.ru_utime + start.ru_stime)
    CPU_FILE.write_text(f"{spent:.0f}")
    print(f"CPU time of every run's mutants and baselines so far: {spent / 3600:.1f} hours")
    if FAILED_BASELINES:
        sys.exit(f"not tested, their tests failing on the unmutated code: {', '.join(FAILED_BASELINES)}")


if __name__ == "__main__":
    main(sys.argv[1:])
