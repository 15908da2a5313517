"""Nothing in the code evaluates input: no eval / exec / compile / __import__, no unpickling,
no unsafe YAML loading, no shell.

Every ``.py`` file under splicemix/, study/, benchmarks/ and analysis/ (when present) is parsed
with ``ast`` and searched for:

* calls of the builtins ``eval``, ``exec``, ``compile``, ``__import__`` (also as ``builtins.x``);
* ``pickle`` / ``cloudpickle`` / ``dill`` / ``marshal`` ``load(s)`` and ``Unpickler``, ``shelve.open``;
* ``yaml.load`` / ``load_all`` / ``unsafe_load`` / ``full_load`` and any use of ``yaml.Loader``,
  ``UnsafeLoader``, ``FullLoader`` or their C versions (only ``safe_load`` and SafeLoader-based
  loaders are allowed);
* ``os.system`` / ``os.popen`` and ``subprocess`` calls with ``shell=True`` (or a non-constant shell).

Imports under another name (``import yaml as y``, ``from pickle import loads``) are followed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("splicemix", "study", "benchmarks", "analysis")

BUILTINS = {"eval", "exec", "compile", "__import__"}
CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("marshal", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("yaml", "load"),
    ("yaml", "load_all"),
    ("yaml", "unsafe_load"),
    ("yaml", "unsafe_load_all"),
    ("yaml", "full_load"),
    ("yaml", "full_load_all"),
    ("os", "system"),
    ("os", "popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "__import__"),
}
REFERENCES = {("yaml", n) for n in ("Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader")}
SUBPROCESS = {"run", "call", "check_call", "check_output", "Popen", "getoutput", "getstatusoutput"}
WATCHED = {m for m, _ in CALLS | REFERENCES} | {"subprocess"}


def python_files() -> list[Path]:
    files = []
    for root in ROOTS:
        d = REPO / root
        if d.is_dir():
            files += sorted(p for p in d.rglob("*.py") if ".ipynb_checkpoints" not in p.parts)
    return files


def findings(source: str, name: str = "<src>") -> list[str]:
    """Every forbidden construct in ``source`` as ``name:line: what``."""
    tree = ast.parse(source, filename=name)
    modules: dict[str, str] = {}  # local name -> watched module
    names: dict[str, tuple[str, str]] = {}  # local name -> (module, attribute) imported from it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in WATCHED or top == "builtins":
                    modules[(a.asname or a.name).split(".")[0]] = top
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in WATCHED or top == "builtins":
                for a in node.names:
                    names[a.asname or a.name] = (top, a.name)

    def resolve(expr: ast.AST) -> tuple[str, str] | None:
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id in modules:
            return modules[expr.value.id], expr.attr
        if isinstance(expr, ast.Name) and expr.id in names:
            return names[expr.id]
        return None

    out = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            out += [f"{where}: import of {top}.{a.name}" for a in node.names if (top, a.name) in REFERENCES]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BUILTINS and f.id not in names:
                out.append(f"{where}: call of {f.id}()")
            target = resolve(f)
            if target in CALLS:
                out.append(f"{where}: call of {'.'.join(target)}()")
            if target and target[0] == "subprocess" and target[1] in SUBPROCESS:
                for kw in node.keywords:
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        out.append(f"{where}: subprocess.{target[1]}(shell=...)")
        if isinstance(node, (ast.Attribute, ast.Name)):
            target = resolve(node)
            if target in REFERENCES:
                out.append(f"{where}: use of {'.'.join(target)}")
    return out


def test_the_roots_are_searched():
    files = python_files()
    rel = {str(p.relative_to(REPO)) for p in files}
    assert {
        "splicemix/config/loading.py",
        "splicemix/config/schema.py",
        "splicemix/config/paths.py",
        "study/schema.py",
        "study/run.py",
        "splicemix/train.py",
    } <= rel
    assert any(r.startswith("benchmarks/") for r in rel)


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_eval_exec_unsafe_yaml_pickle_or_shell(path):
    assert findings(path.read_text(encoding="utf-8"), str(path.relative_to(REPO))) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "eval('1+1')",
        "exec('x = 1')",
        "compile('1', 'f', 'eval')",
        "__import__('os')",
        "import builtins\nbuiltins.eval('1')",
        "import pickle\npickle.loads(b'')",
        "from pickle import loads as l\nl(b'')",
        "import yaml\nyaml.load('a: 1', Loader=yaml.SafeLoader)",
        "import yaml as y\ny.unsafe_load('a')",
        "import yaml\nyaml.full_load('a')",
        "import yaml\nx = yaml.Loader",
        "from yaml import FullLoader",
        "import os\nos.system('ls')",
        "import subprocess\nsubprocess.run('ls', shell=True)",
        "import subprocess as sp\nsp.Popen('ls', shell=flag)",
        "from subprocess import check_output\ncheck_output('ls', shell=True)",
    ],
)
def test_the_checker_catches(snippet):
    assert findings(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "net.eval()",  # a torch module's eval mode
        "import yaml\nyaml.safe_load('a: 1')\nyaml.safe_dump({})",
        "import subprocess\nsubprocess.run(['git', 'status'], shell=False)",
        "import re\nre.compile('x')",
        "import torch\nm = torch.compile(f)",
    ],
)
def test_the_checker_allows(snippet):
    assert findings(snippet) == [], snippet
