"""The package structure holds: no import cycles, imports run down the layers,
the wire package depends on nothing of the daemon, and no module is over the
~400-line guide. Walks the source with ``ast`` (every import, including the lazy
ones inside functions), so it needs nothing installed and cannot be fooled by
import order."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("openclaw_cli", "openclaw_daemon", "openclaw_sessions")
MAX_LINES = 400
# Being cut apart in issue 14; each entry goes when its fix lands, and the tests
# below fail if a new one appears or a fixed one is left listed.
KNOWN_CYCLES: list[list[str]] = []
# The one module llama_cpp may be imported in (STYLE.md) cannot be split in
# two without breaking that rule; 416 lines after the sliding-window,
# template and GPU work of issue 15.
KNOWN_LONG: set[str] = {"openclaw_daemon.model.llama_engine"}

# Lower layers never import higher ones. A module's layer is the longest prefix
# listed here. The CLI sits on top: it may import anything, the daemon never it.
LAYERS: dict[str, int] = {
    "openclaw_daemon.wire": 0,
    "openclaw_daemon.config": 1,
    "openclaw_daemon.state_dirs": 1,
    "openclaw_daemon.model_names": 1,
    "openclaw_daemon.observability": 2,
    "openclaw_sessions": 2,
    "openclaw_daemon.model": 3,
    "openclaw_daemon.cache": 4,
    "openclaw_daemon.tools": 4,
    "openclaw_daemon.turn": 5,
    "openclaw_daemon.front": 5,  # the OpenAI front's completions: a turn's parts, no session
    "openclaw_daemon.serve": 6,
    "openclaw_daemon": 6,  # the package init itself
    "openclaw_cli": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (a ``from pkg import name`` of a
    submodule counts as importing that submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import sub`` imports the submodule; ``from mod import name``
            # the module (a package's init runs too, but inits are docstrings only).
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    found.discard(module_name(path))
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges = {name: imports_of(path, modules) for name, path in modules.items()}
    # A package init is imported along with any of its submodules; it is not an edge.
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in edges.items()}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    assert sorted(find_cycles(graph())) == sorted(KNOWN_CYCLES)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_run_down_the_layers() -> None:
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )
    assert upward == []


def test_the_wire_package_imports_nothing_of_the_daemon() -> None:
    modules = project_modules()
    for name, path in modules.items():
        if name.startswith("openclaw_daemon.wire"):
            outside = {
                t for t in imports_of(path, modules) if not t.startswith("openclaw_daemon.wire")
            }
            assert outside == set(), f"{name} imports {outside}"
            third_party = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    third_party |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    third_party.add(node.module.split(".")[0])
            allowed = set(sys.stdlib_module_names) | {"msgpack", "openclaw_daemon", "__future__"}
            assert third_party <= allowed, f"{name} imports {third_party - allowed}"


def test_no_module_is_over_the_line_guide() -> None:
    long = {
        name: lines
        for name, path in project_modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) == KNOWN_LONG, long


# What the CLI may use of the daemon's packages: the contract, the paths, the
# trace records it renders, and the memory check `daemon start` runs before it
# spawns. Nothing that loads a model, a cache or a turn.
CLI_MAY_IMPORT = (
    "openclaw_daemon.wire",
    "openclaw_daemon.config",
    "openclaw_daemon.state_dirs",
    "openclaw_daemon.model_names",
    "openclaw_daemon.observability",
    "openclaw_daemon.model.admission",
    "openclaw_daemon.model.catalog",  # GGUF headers only, for `openclaw models`
    # `models show` names the tool-call format, imported inside the command
    # (jinja2; tests/unit/test_cli_imports.py proves start-up does not load it).
    "openclaw_daemon.model.chat_template",
    "openclaw_daemon.tools.formats",
    "openclaw_sessions",
    # `models list` reads openclaw.json (stdlib + json5) and probes the upstreams
    # (httpx), both imported inside the command, off the start-up path.
    "openclaw_daemon.upstream.config_file",
    "openclaw_daemon.upstream.probe",
)


def test_the_cli_imports_only_the_contract_and_light_modules() -> None:
    beyond = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source.startswith("openclaw_cli")
        for target in targets
        if not target.startswith("openclaw_cli")
        and not any(target == p or target.startswith(p + ".") for p in CLI_MAY_IMPORT)
    )
    assert beyond == []


def _lazy_attribute_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """What a module-level ``__getattr__`` (PEP 562) imports: loaded on first use
    of the attribute, never by importing the package (checked below)."""
    tree = ast.parse(path.read_text(), str(path))
    lazy = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    found: set[str] = set()
    for function in lazy:
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" for a in node.names} & set(modules)
    return found


def test_the_python_api_is_not_loaded_by_the_cli_package() -> None:
    import subprocess
    import sys

    probe = "import sys, openclaw_cli; print('openclaw_cli.client' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shown.stdout.strip() == "False", shown.stderr


def test_package_inits_stay_light() -> None:
    """Importing a submodule runs every init above it: the top-level inits import
    nothing of the project (the CLI's start pays for them), and a subpackage's
    init at most re-exports its own modules (``tools.formats.format_for``)."""
    modules = project_modules()
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        targets = imports_of(path, modules) - _lazy_attribute_imports(path, modules)
        if name in PACKAGES:
            assert targets == set(), name
        else:
            assert all(t.startswith(name + ".") for t in targets), (name, targets)
