"""The architecture stays visible: a lower room of the package never imports a higher one."""

import ast
from pathlib import Path

import waveletflow

#: the rooms from the bottom up; a module may import only rooms of its own rank or lower
RANK = {"errors": 0, "config": 1, "metrics": 1, "images": 1, "rundir": 1, "files": 1, "runlock": 1, "data": 2, "wavelets": 2, "mcmc": 2,
        "layers": 3, "flows": 4, "models": 5, "training": 6, "superres": 6, "quality": 6, "sampling": 6, "__init__": 6, "cli": 7,
        "__main__": 8}


def imports(root: Path):
    for f in root.rglob("*.py"):
        room = f.relative_to(root).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "waveletflow":
                    yield f, room, parts[1] if len(parts) > 1 else "__init__"


def test_no_room_imports_a_higher_one():
    root = Path(waveletflow.__file__).parent
    rooms = {p.name.removesuffix(".py") for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert rooms <= set(RANK), f"place the new rooms in RANK: {sorted(rooms - set(RANK))}"
    found = list(imports(root))
    assert any(room == "sampling" and target == "mcmc" for _, room, target in found)  # the walk sees imports
    assert not any(room == "models" and target in ("mcmc", "sampling") for _, room, target in found)
    bad = [f"{f.relative_to(root)} ({room}) imports {target}" for f, room, target in found
           if target != room and RANK[target] > RANK[room]]
    assert not bad, bad


def module_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Every import between the package's modules, function-level ones included (``from a import b`` goes to the
    module ``a.b`` when that is a module, else to ``a``), and every import of another module's private name."""
    def name_of(f: Path) -> str:
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(f): f for f in root.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for m, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] == "waveletflow":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    edges[m].add(sub if sub in modules else node.module)
                    if a.name.startswith("_") and not a.name.startswith("__") and node.module != m:
                        private.append(f"{m} imports {node.module}.{a.name}")
            elif isinstance(node, ast.Import):
                edges[m].update(a.name for a in node.names if a.name.split(".")[0] == "waveletflow")
        edges[m].discard(m)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_and_no_private_import():
    """No two modules import each other, even through imports inside functions, and no module imports another's
    private (``_name``) names: what two modules share lives in a module of its own."""
    edges, private = module_graph(Path(waveletflow.__file__).parent)
    assert "waveletflow.training.levels" in edges["waveletflow.training.trainer"]  # the walk sees imports
    assert cycles(edges) == []
    assert private == []


def test_no_source_file_is_longer_than_400_lines():
    root = Path(waveletflow.__file__).parent
    long = {str(f.relative_to(root)): n for f in root.rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert not long, long
