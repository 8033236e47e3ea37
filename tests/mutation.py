"""``make mutation``: cosmic-ray over fastbp's arithmetic and state, module by module, each mutant run against only the
tests that cover its module, in a scratch clone (the working tree is never mutated).

    python -m tests.mutation [fastbp/io.py ...]      # every module of MODULES when none is named

Prints a table (module, mutants, killed, survived, timed out) and leaves each session's database and report in
``.mutation/`` for ``cr-report``/``cr-html``. Operators are cosmic-ray's core ones minus those that cannot be told
apart in this code (bitwise and shift operators, ``is``/``in`` swaps; see OPERATORS_EXCLUDED). Every mutant of a file
the kernels compile changes the kernels' cache key, so its tests recompile them: expect ~10-15 s per mutant for the
Python modules and 30-60 s for the kernel modules (hours for the whole list on 2 cores).
"""

import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / ".mutation"
# module: the tests that cover it
MODULES = {
    # io.py also holds load_state_dict (test_network, test_golden) and reads old files (test_schedules)
    "fastbp/io.py": ["tests/test_io.py", "tests/test_pinned.py", "tests/test_schedules.py", "tests/test_network.py",
                     "tests/test_golden.py"],
    "fastbp/schedules.py": ["tests/test_schedules.py", "tests/test_golden.py"],
    "fastbp/optim.py": ["tests/test_kernels.py", "tests/test_golden.py", "tests/test_schedules.py"],
    "fastbp/losses.py": ["tests/test_kernels.py", "tests/test_golden.py", "tests/test_objectives.py"],
    "fastbp/activations.py": ["tests/test_kernels.py", "tests/test_golden.py", "tests/test_objectives.py"],
    "fastbp/kernels/generic.py": ["tests/test_kernels.py", "tests/test_golden.py", "tests/test_objectives.py"],
    "fastbp/kernels/layout.py": ["tests/test_kernels.py", "tests/test_network.py", "tests/test_fuzz.py"],
    "fastbp/kernels/codegen.py": ["tests/test_compiled.py"],
    "fastbp/kernels/codegen_signature.py": ["tests/test_compiled.py", "tests/test_population_compiled.py"],
    "fastbp/kernels/population.py": ["tests/test_population.py"],
    "fastbp/kernels/codegen_population.py": ["tests/test_population_compiled.py"],
    "fastbp/kernels/estimator.py": ["tests/test_sklearn.py"],
    "fastbp/training.py": ["tests/test_network.py", "tests/test_pinned.py", "tests/test_divergence.py"],
    "fastbp/distributed.py": ["tests/test_distributed.py"],
    "fastbp/population.py": ["tests/test_population.py", "tests/test_population_compiled.py"],
    "fastbp/sklearn_training.py": ["tests/test_sklearn.py"],
}
OPERATORS_EXCLUDED = [
    "core/ReplaceBinaryOperator_.*_(FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)",
    "core/ReplaceBinaryOperator_(FloorDiv|Mod|Pow|RShift|LShift|BitOr|BitAnd|BitXor)_.*",
    "core/ReplaceComparisonOperator_.*_(Is|IsNot|In|NotIn)",
    "core/ReplaceComparisonOperator_(Is|IsNot|In|NotIn)_.*",
]


def config(module, tests):
    excluded = ",\n  ".join(f'"{pattern}"' for pattern in OPERATORS_EXCLUDED)
    return (f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = 900.0\nexcluded-modules = []\n'
            f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider {" ".join(tests)}"\n\n'
            f'[cosmic-ray.distributor]\nname = "local"\n\n'
            f'[cosmic-ray.filters.operators-filter]\nexclude-operators = [\n  {excluded},\n]\n')


def run(module, tests, clone):
    """Mutate ``module`` in the clone; (mutants, killed, survived, timed out)."""
    name = module.replace("/", ".").removesuffix(".py")
    toml, db = OUT / f"{name}.toml", OUT / f"{name}.sqlite"
    toml.write_text(config(module, tests))
    tools = pathlib.Path(sys.executable).parent
    for command in ([tools / "cosmic-ray", "init", toml, db], [tools / "cr-filter-operators", db, toml],
                    [tools / "cosmic-ray", "exec", toml, db]):
        subprocess.run([str(part) for part in command], cwd=clone, check=True)
    report = subprocess.run([str(tools / "cr-report"), "--show-output", str(db)], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    (OUT / f"{name}.report.txt").write_text(report)
    outcomes = [line.split("test outcome: ")[-1].strip() for line in report.splitlines() if "test outcome:" in line]
    counted = [o for o in outcomes if o != "None"]  # filtered operators are skipped, not mutants
    return (len(counted), counted.count("TestOutcome.KILLED"), counted.count("TestOutcome.SURVIVED"),
            counted.count("TestOutcome.INCOMPETENT"))


def main(argv):
    modules = argv or list(MODULES)
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        clone = pathlib.Path(scratch) / "fastbp"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        rows = [(module, *run(module, MODULES[module], clone)) for module in modules]
    print(f"{'module':40} {'mutants':>8} {'killed':>7} {'survived':>9} {'incompetent':>12}  killed %")
    for module, total, killed, survived, incompetent in rows:
        print(f"{module:40} {total:8} {killed:8} {survived:9} {incompetent:12}  {100 * killed / max(total, 1):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
