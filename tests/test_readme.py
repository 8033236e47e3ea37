"""Every Python block in README.md and in the user guide (docs/guide/*.md) runs as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FILES = [README, *sorted((ROOT / "docs" / "guide").glob("*.md"))]
BLOCKS = [(path, i, code) for path in FILES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]


def run(path, code):
    exec(compile(code, str(path), "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("path, code", [(p, c) for p, _, c in BLOCKS],
                         ids=[f"{p.relative_to(ROOT)}:block{i}" for p, i, _ in BLOCKS])
def test_block_runs(path, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(path, code)
    capsys.readouterr()


def test_readme_xor_block_prints_xor(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path, _, code = BLOCKS[0]
    assert path == README
    run(path, code)
    assert "[0. 1. 1. 0.]" in capsys.readouterr().out
