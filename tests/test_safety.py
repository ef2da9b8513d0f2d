"""Nothing a user hands the package is unpickled or run: a scan of every source file's syntax tree."""

import ast
from pathlib import Path

import featurecontrols

PACKAGE = Path(featurecontrols.__file__).parent
UNSAFE_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "marshal", "shelve"}


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return "missing"


def _problems(path: Path, root: Path = PACKAGE) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        if name in {"eval", "exec"} and not owner:
            found.append(f"{where} calls {name}")
        if name == "load" and owner == "torch" and _keyword(node, "weights_only") is not True:
            found.append(f"{where} torch.load without weights_only=True")
        if name == "load" and owner in {"np", "numpy"} and _keyword(node, "allow_pickle") is not False:
            found.append(f"{where} np.load without allow_pickle=False")
        if name == "load" and owner in {"torch.jit", "jit"}:
            found.append(f"{where} torch.jit.load runs code")
        if name == "from_pretrained" and (
            _keyword(node, "trust_remote_code") is not False or _keyword(node, "local_files_only") is not True
        ):
            found.append(f"{where} from_pretrained without trust_remote_code=False, local_files_only=True")
    return found


def test_the_package_never_unpickles_or_runs_what_it_loads() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    assert [p for f in files for p in _problems(f)] == []


def test_the_scan_catches_each_unsafe_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch, numpy as np\ntorch.load('x')\ntorch.load('x', weights_only=False)\n"
        "np.load('y')\neval('1')\nAutoModel.from_pretrained('z', trust_remote_code=True)\n"
    )
    assert len(_problems(bad, tmp_path)) == 6
