"""The examples run as a user would run them, at reduced length, and learn."""

import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_point_mass_learns_online():
    out = subprocess.run([sys.executable, str(EXAMPLES / "point_mass.py"), "--episodes", "40", "--agents", "16"],
                         capture_output=True, text=True, check=True).stdout
    results = [(float(a), float(b)) for a, b in re.findall(r"success before ([\d.]+) after ([\d.]+)", out)]
    assert len(results) == 2, out  # one agent, and the population
    for before, after in results:
        assert before < 0.3 and after >= 0.9, out
    assert "train steps/s" in out
