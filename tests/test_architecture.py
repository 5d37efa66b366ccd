"""The house rules of the code base, checked on its source: the server and the trainer talk only through
shared/, no import circle, config.py a leaf, only the command line exits, every teacher call through shared's
client, no function longer than a screen (benchmarks included), callers of a weight transport through its
protocol only, runtime packages free of build- and test-time code."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

# --- the code's shape ---------------------------------------------------------------------------------------

PACKAGES = ("rollout_server", "shared", "trainer")


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_server_and_trainer_talk_only_through_shared():
    forbidden = {
        "rollout_server": {"trainer"},
        "trainer": {"rollout_server"},
        "shared": {"trainer", "rollout_server"},
    }
    for package, banned in forbidden.items():
        for path, tree in _modules(package):
            assert not (_imports(tree) & banned), (
                f"{path.relative_to(ROOT)} imports {_imports(tree) & banned}"
            )


def test_runtime_packages_hold_runtime_code():
    """What users install (rollout_server, shared, trainer) imports nothing from the build- and test-time
    code (devtools: the tiny models, the prompt-set generators), the tests or the benchmarks, and holds no
    generator of its own data (a `make_*.py` module)."""
    build_time = {"devtools", "tests", "benchmarks"}
    for package in PACKAGES:
        for path, tree in _modules(package):
            assert not (_imports(tree) & build_time), (
                f"{path.relative_to(ROOT)} imports {_imports(tree) & build_time}"
            )
            assert not path.name.startswith("make_"), (
                f"{path.relative_to(ROOT)}: a generator in a runtime package"
            )


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for package in (*PACKAGES, "benchmarks")
        for path, tree in _modules(package)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60
    ]
    assert not long, long


def _module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(tree: ast.AST, known: set[str]) -> set[str]:
    """Every project module a file imports anywhere (functions and TYPE_CHECKING blocks included):
    `from a.b import c` names a.b.c where that is a module, else a.b."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
            if len(subs) < len(node.names):
                found.add(node.module)
    return found


def test_no_import_circle():
    """No two modules import each other through any chain, counting imports inside functions and
    type-checking blocks: each room stands above what it uses."""
    everything = (*PACKAGES, "benchmarks", "devtools")
    trees = {_module_name(path): tree for package in everything for path, tree in _modules(package)}
    graph = {name: _project_imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_config_is_a_leaf():
    tree = ast.parse((ROOT / "trainer" / "config.py").read_text())
    assert not {m for m in _imports(tree) if m in PACKAGES}, "trainer/config.py imports the project"


def _exits(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("SystemExit", "exit")
    return isinstance(node, ast.Attribute) and node.attr == "exit" and getattr(node.value, "id", "") == "sys"


def test_only_the_command_line_exits():
    """Library code raises RunError (one line); trainer/cli.py alone turns it into an exit."""
    exits = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in _modules("trainer")
        if path.name != "cli.py"
        for node in ast.walk(tree)
        if _exits(node)
    ]
    assert not exits, exits


def _builds_a_request(node: ast.AST) -> bool:
    """An httpx call other than its exception types, or a bearer header written out."""
    if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "httpx":
        return not node.attr.endswith(("Error", "Exception"))
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(c, ast.Constant) and "Bearer " in str(c.value) for c in node.values)
    return False


# A load test counts the server's raw answers (errors, 503s) per request: a retrying client would hide them.
RAW_HTTP = {"benchmarks/load_test.py"}


def test_every_teacher_call_goes_through_shared_client():
    """No module of the trainer or the benchmarks builds an HTTP request or a bearer header itself (health
    polls, metrics and scoring included: shared.client has them)."""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in ("trainer", "benchmarks")
        for path, tree in _modules(package)
        if str(path.relative_to(ROOT)) not in RAW_HTTP
        for node in ast.walk(tree)
        if _builds_a_request(node)
    ]
    assert not calls, calls


def test_every_shipped_data_file_is_package_data():
    """A data file the code reads (prompt sets, task samples) must be in the wheel: pyproject's package-data
    globs, which a move of the folder silently stops matching."""
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package in PACKAGES:
        shipped = {p for p in (ROOT / package).rglob("*") if p.suffix in (".jsonl", ".json", ".txt")}
        packaged = {p for pattern in package_data.get(package, []) for p in (ROOT / package).glob(pattern)}
        missing = sorted(str(p.relative_to(ROOT)) for p in shipped - packaged)
        assert not missing, f"not in [tool.setuptools.package-data] {package}: {missing}"


# --- the weight-transport seam ------------------------------------------------------------------------------


def _transport_classes() -> list[type]:
    """Every class in trainer/weights/ that implements a transport (its name ends in Transport)."""
    import importlib

    from trainer.weights.transport import WeightTransport

    found = []
    for path, tree in _modules("trainer/weights"):
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Transport")]
        module = importlib.import_module(_module_name(path))
        found += [getattr(module, n) for n in names if getattr(module, n) is not WeightTransport]
    return found


def test_every_weight_transport_has_the_whole_protocol():
    """Callers use only `WeightTransport`'s members, counters and lifecycle included, so every transport has
    each of them (a no-op where it has nothing to do): a transport missing one fails here, not mid-run."""
    from trainer.weights.transport import WeightTransport

    members = set(WeightTransport.__annotations__) | {
        n for n, v in vars(WeightTransport).items() if callable(v) and not n.startswith("_")
    }
    assert {"name", "send", "latest", "receive", "counts", "close"} <= members
    transports = _transport_classes()
    assert len(transports) >= 2, transports
    for cls in transports:
        missing = sorted(m for m in members if not hasattr(cls, m))
        assert not missing, f"{cls.__name__} lacks {missing} of WeightTransport"


def test_no_caller_reaches_around_the_transport():
    """No hasattr/getattr/type() on a transport outside trainer/weights/: what a caller needs is in the
    protocol."""
    probes = {"hasattr", "getattr", "type", "isinstance"}
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in (*PACKAGES, "benchmarks")
        for path, tree in _modules(package)
        if "weights" not in path.relative_to(ROOT).parts
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in probes
        and node.args
        and "transport" in ast.unparse(node.args[0]).lower()
    ]
    assert not found, found


# --- configuration by component -----------------------------------------------------------------------------


def test_a_function_handed_a_config_part_reads_only_that_part():
    """`RunConfig.part(Group)` hands a component its own settings: a function whose parameter is typed with
    a group reads only that group's fields and methods (tests that pass a whole RunConfig still work: it is
    every group)."""
    import trainer.config as config

    parts = {
        name: cls
        for name, cls in vars(config).items()
        if isinstance(cls, type) and issubclass(cls, config.BaseModel) and name.endswith("Config")
        and cls is not config.RunConfig
    }  # fmt: skip
    assert len(parts) == 7, sorted(parts)
    assert set(config.RunConfig.model_fields) == {f for cls in parts.values() for f in cls.model_fields}
    typed, strays = 0, []
    for package in (*PACKAGES, "benchmarks"):
        for path, tree in _modules(package):
            for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for arg in fn.args.args + fn.args.kwonlyargs:
                    part = parts.get(ast.unparse(arg.annotation)) if arg.annotation else None
                    if part is None:
                        continue
                    typed += 1
                    where = f"{path.relative_to(ROOT)} {fn.name}"
                    strays += [
                        f"{where}:{node.lineno}: {arg.arg}.{node.attr} is not in {part.__name__}"
                        for node in ast.walk(fn)
                        if isinstance(node, ast.Attribute)
                        and isinstance(node.value, ast.Name)
                        and node.value.id == arg.arg
                        and not hasattr(part, node.attr)
                        and node.attr not in part.model_fields
                    ]
    assert typed >= 10 and not strays, strays
