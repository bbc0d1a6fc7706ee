"""The architecture stays visible: a lower room of the package never imports a higher one."""

import ast
from pathlib import Path

import waveletflow

#: the rooms from the bottom up; a module may import only rooms of its own rank or lower
RANK = {"errors": 0, "config": 1, "metrics": 1, "images": 1, "rundir": 1, "data": 2, "wavelets": 2, "mcmc": 2,
        "layers": 3, "flows": 4, "models": 5, "training": 6, "superres": 6, "quality": 6, "__init__": 6, "cli": 7,
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
    assert any(room == "models" and target == "mcmc" for _, room, target in found)  # the walk sees imports
    bad = [f"{f.relative_to(root)} ({room}) imports {target}" for f, room, target in found
           if target != room and RANK[target] > RANK[room]]
    assert not bad, bad
