"""The layout the README and docs/architecture.md describe, checked on the import graph (ast, no import)."""
from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("common", "exporter", "admin", "wordslab_dashboard")
# HTTP client libraries: product code speaks HTTP through common/http_client.py only.
HTTP_LIBRARIES = ("requests", "httpx", "urllib3", "aiohttp")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def product_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PRODUCT_PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


@cache
def syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


# Parsed while the tests are collected, before any test leaves threads running: CPython before
# 3.11.8 / 3.12.1 (gh-106905) keeps one AST conversion depth for all threads, so an ast.parse
# racing another thread's AST work can fail with "AST constructor recursion depth mismatch".
for _path in product_modules().values():
    syntax_tree(_path)


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports, at the top or inside a function: "a.b" for `from a import b`
    when a/b is a module, else "a"."""
    path = product_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(syntax_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in product_modules())
    return frozenset(found)


def top(name: str) -> str:
    return name.split(".")[0]


def test_the_import_walk_sees_function_level_and_from_imports():
    # The checks below can fail: the walk finds what a module really imports.
    assert "docker" in imports_of("admin.ops.endpoint_ops")  # imported inside a function
    assert "common.sources.ollama_client" in imports_of("common.sources.model_sources")
    assert "exporter.collectors.apps" in imports_of("exporter.registry")


def test_no_second_http_client_library_in_product_code():
    offenders = {module: sorted(name for name in imports_of(module) if top(name) in HTTP_LIBRARIES)
                 for module in product_modules()}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_one_gauge_helper():
    # A function that only returns a new GaugeMetricFamily is a copy of exporter.collectors.base.gauge.
    helpers = []
    for module, path in product_modules().items():
        for node in ast.walk(syntax_tree(path)):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(node.body) >= 1
                    and isinstance(node.body[-1], ast.Return) and isinstance(node.body[-1].value, ast.Call)
                    and getattr(node.body[-1].value.func, "id", "") == "GaugeMetricFamily"):
                helpers.append(f"{module}.{node.name}")
    assert helpers == ["exporter.collectors.base.gauge"]


# The only places outside common/config.py that touch os.environ: each builds the environment of a
# child process (git, the runner's services).
CHILD_ENV_BUILDERS = {("common.sources.git_status", "git_env"), ("wordslab_dashboard.cli", "start")}


def _environment_reads(module: str) -> list[tuple[str, int]]:
    """(enclosing function, line) of each os.environ / os.getenv / os.putenv use in `module`."""
    tree = syntax_tree(product_modules()[module])
    found = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        touches = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                   and node.attr in ("environ", "environb", "getenv", "putenv", "unsetenv"))
        touches |= isinstance(node, ast.ImportFrom) and node.module == "os" and any(
            a.name in ("environ", "environb", "getenv", "putenv") for a in node.names)
        if touches:
            found.append((function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return found


def test_only_the_settings_module_reads_the_environment():
    reads = {(module, function): line for module in product_modules() if module != "common.config"
             for function, line in _environment_reads(module)}
    assert set(reads) - CHILD_ENV_BUILDERS == set(), reads
    assert CHILD_ENV_BUILDERS <= set(reads)  # the allow-list names real places (and this check sees them)


def test_no_wordslab_variable_looked_up_outside_the_settings_module():
    # settings.get("WORDSLAB_X") / env["WORDSLAB_X"] deep in a module is a tunable without a field.
    lookups = []
    for module, path in product_modules().items():
        if module == "common.config":
            continue
        for node in ast.walk(syntax_tree(path)):
            key = None
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("get", "pop") and node.args:
                key = node.args[0]
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                key = node.slice
            if isinstance(key, ast.Constant) and str(key.value).startswith("WORDSLAB_") \
                    and key.value != "WORDSLAB_GENERATED_PASSWORD":  # a Flask config key, not a variable
                lookups.append(f"{module}:{node.lineno} {key.value}")
    assert lookups == []


def test_each_cloud_provider_is_declared_once_on_its_client_class():
    from admin.cloud.providers import CLIENT_CLASSES
    declared = {}
    for client in CLIENT_CLASSES:
        home = client.__module__
        for value in (client.provider, client.key_var, client.default_base_url):
            assert value, f"{client.__name__} leaves a declaration empty"
            declared[value] = home
        assert client.display_name and client.storage_rule is not None
    elsewhere = []
    for module, path in product_modules().items():
        for node in ast.walk(syntax_tree(path)):
            if isinstance(node, ast.Constant) and node.value in declared and declared[node.value] != module:
                elsewhere.append(f"{module}:{node.lineno} {node.value!r}")
    assert elsewhere == []


def test_no_module_level_list_named_just_providers():
    # Three different lists were all called PROVIDERS: cloud, external API and model providers.
    found = [module for module, path in product_modules().items()
             for node in syntax_tree(path).body
             if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PROVIDERS" for t in node.targets)]
    assert found == []


def _with_parents(name: str) -> set[str]:
    # Importing a.b.c runs a/__init__ and a/b/__init__ too.
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def reachable_from(entry: str) -> set[str]:
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module in seen or module not in product_modules():
            continue
        seen.add(module)
        for name in imports_of(module):
            todo.extend(_with_parents(name) & set(product_modules()))
    return seen


def test_every_exporter_module_is_run_by_the_exporter():
    # exporter/ holds only what the exporter process runs; __main__ is `python -m exporter`.
    modules = {m for m in product_modules() if top(m) == "exporter"}
    assert modules - reachable_from("exporter.cli") - {"exporter.__main__"} == set()
    assert "exporter.cli" in imports_of("exporter.__main__")


def _importers_of(package: str, outside: tuple[str, ...]) -> dict[str, list[str]]:
    found = {m: sorted(n for n in imports_of(m) if top(n) == package)
             for m in product_modules() if top(m) in outside}
    return {m: names for m, names in found.items() if names}


def test_nothing_outside_admin_imports_admin():
    assert _importers_of("admin", ("common", "exporter", "wordslab_dashboard")) == {}


def test_every_common_module_is_run_by_both_processes():
    # common/ holds what both use; a module only one process runs belongs in that process' package.
    both = reachable_from("exporter.cli") & reachable_from("admin.cli")
    assert {m for m in product_modules() if top(m) == "common"} - both == set()


def test_common_imports_neither_process():
    assert _importers_of("exporter", ("common",)) == {}
    assert _importers_of("admin", ("common",)) == {}


def test_no_process_imports_another_process_package():
    # The runner starts the exporter and the admin as processes (`python -m exporter`, `-m admin`);
    # the admin reads what the exporter publishes through Prometheus, never its code.
    assert _importers_of("exporter", ("wordslab_dashboard", "admin")) == {}
    assert _importers_of("admin", ("wordslab_dashboard",)) == {}


def test_the_architecture_page_names_files_that_exist():
    import re
    text = (REPO / "docs" / "architecture.md").read_text() + (REPO / "README.md").read_text()
    tops = ("common/", "exporter/", "admin/", "wordslab_dashboard/", "grafana/", "prometheus/", "tests/",
            "docs/", "bench/")
    named = {p for p in re.findall(r"`((?:[a-z_]+/)+[\w.*-]*)`", text) if p.startswith(tops)}
    missing = [p for p in sorted(named) if "*" not in p and not (REPO / p).exists()]
    assert named and missing == []
