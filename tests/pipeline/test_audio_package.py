"""pipeline/audio/ is a package of one module per job whose modules share only public names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import hushdrop.pipeline.audio as audio
from tests.helpers import import_graph, reachable

PACKAGE = Path(audio.__file__).parent
CALLERS = [*sorted(PACKAGE.glob("*.py")), PACKAGE.parent / "ffmpeg_check.py"]


def hushdrop_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every ``from hushdrop… import name`` in ``path``, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hushdrop."):
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_no_module_of_the_package_or_ffmpeg_check_imports_a_private_name():
    private = [f"{path.name}: {module}.{name}" for path in CALLERS for module, name in hushdrop_imports(path)
               if name.startswith("_")]
    assert private == []


def test_the_package_is_no_circle_and_never_reaches_the_stages():
    """Its modules import only what lies below them, and nothing of the chain above: whether a
    binary can run the stages' filters (ffmpeg_check) imports the stages, so it sits outside."""
    graph = import_graph()
    modules = sorted(name for name in graph if name.startswith("hushdrop.pipeline.audio."))
    assert [m.rsplit(".", 1)[1] for m in modules] == ["binary", "containers", "failures", "filters", "probe", "working"]
    for module in modules:
        reached = reachable(graph, module)
        assert module not in reached, f"{module} imports itself through others"
        assert not any(name.startswith(("hushdrop.stages", "hushdrop.pipeline.job")) for name in reached), module
    assert any(name.startswith("hushdrop.stages") for name in reachable(graph, "hushdrop.pipeline.ffmpeg_check"))


def test_every_public_name_is_importable_from_the_package_itself():
    for name in audio.__all__:
        owner = getattr(audio, name)
        home = getattr(owner, "__module__", None)
        if home is not None and home.startswith("hushdrop.pipeline.audio."):
            assert getattr(importlib.import_module(home), name) is owner
