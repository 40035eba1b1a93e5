"""The conda environments of the rules pin what pyproject.toml pins."""

import re
import tomllib
from pathlib import Path

import yaml
from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)$")


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {m[1].lower(): m[2] for r in requirements if (m := PIN.match(r))}


def test_every_env_pin_matches_pyproject():
    pins = pyproject_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for requirement in pip:
            if requirement.startswith("-"):
                continue
            m = PIN.match(requirement)
            assert m, f"{env.name}: {requirement} is not pinned with =="
            assert pins.get(m[1].lower()) == m[2], f"{env.name}: {requirement} differs from pyproject.toml"


def test_core_dependencies_are_all_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert all(PIN.match(r) for r in project["dependencies"])


def test_no_env_file_names_a_local_path():
    """Snakemake copies env files into .snakemake/conda/ before creating them: local paths would break."""
    for env in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for requirement in pip:
            assert not requirement.startswith(("-e", ".", "/", "file:")) and "://" not in requirement, \
                f"{env.name}: {requirement}"


# Pins no rule's code imports itself, and why each env still holds them.
INSTALLED_FOR_OTHERS = {
    "torchvision": "pinned beside torch (other pairs fail to import); SMP's encoders import it",
    "tensorboard": "Lightning's TensorBoardLogger writes through it",
    "onnx": "torch's ONNX exporter writes the file through it",
    "onnxscript": "torch.onnx.export(dynamo=True) builds the graph with it",
}


def rule_commands() -> dict[str, set[str]]:
    """env file -> the `cocoseg` subcommands its rules run, read from the rule files."""
    commands: dict[str, set[str]] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            env = re.search(r'conda:\s*"[./]*envs/([\w.]+)"', block)
            command = re.search(r"python -m cocoseg ([\w-]+)", block)
            if env and command:
                commands.setdefault(env[1], set()).add(command[1])
    return commands


PACKAGE = REPO / "src" / "cocoseg"


def module_file(module: str) -> Path:
    """`report.tables` -> src/cocoseg/report/tables.py; a package -> its __init__.py."""
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_targets(node, module: str) -> list[str]:
    """Package modules named by an import in `module`, as paths below `cocoseg`:
    `from cocoseg.training.train import x` -> training.train, `from cocoseg.training import train`
    -> training.train, and relative forms (`from .tables import y`); [] for other packages.
    A name that is not a module (`from cocoseg.shared.files import read_json`) names its module."""
    if node.level == 0:
        if not (node.module or "").startswith("cocoseg."):
            return []
        base = node.module.split(".")[1:]
    else:
        parts = module.split(".")
        is_package = module_file(module).name == "__init__.py"
        base = parts[: len(parts) - node.level + (1 if is_package else 0)] + ([node.module] if node.module else [])
    named = [".".join([*base, alias.name]) for alias in node.names]
    return [target if module_file(target).exists() else ".".join(base) for target in named]


def package_imports(module: str, seen: set[str]) -> set[str]:
    """Top-level names of the third-party modules `cocoseg.<module>` imports, itself or through the
    package modules it imports (also inside functions), read from the source. Of `cli`, only its
    module-level imports count: each handler imports its own stage (`command_modules`)."""
    import ast
    import sys

    if module in seen:
        return set()
    seen.add(module)
    tree = ast.parse(module_file(module).read_text())
    nodes = tree.body if module == "cli" else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (targets := package_targets(node, module)):
            for target in targets:
                found |= package_imports(target, seen)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return {name for name in found if name not in sys.stdlib_module_names and name != "__future__"}


def command_modules(command: str) -> set[str]:
    """The package modules the handler of `cocoseg <command>` imports, and the CLI itself."""
    import ast
    import inspect

    from cocoseg.cli import build_parser

    parser = build_parser()
    handler = parser._subparsers._group_actions[0].choices[command].get_default("func")
    tree = ast.parse(inspect.getsource(handler))
    return {"cli", *(target for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     for target in package_targets(node, "cli"))}


def env_pins(name: str) -> set[str]:
    spec = yaml.safe_load((REPO / "envs" / name).read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return {PIN.match(requirement)[1].lower() for requirement in pip}


def test_each_env_holds_every_package_its_rules_import_and_nothing_unused():
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    commands = rule_commands()
    assert set(commands) == {p.name for p in (REPO / "envs").glob("*.yaml")}
    for env, names in commands.items():
        seen: set[str] = set()
        imported = set()
        for command in names:
            for module in command_modules(command):
                imported |= package_imports(module, seen)
        needed = {distributions[name][0].lower().replace("_", "-") for name in imported}
        pins = env_pins(env)
        assert needed <= pins, f"{env} lacks {sorted(needed - pins)}, imported by `cocoseg {', '.join(sorted(names))}`"
        unused = pins - needed - set(INSTALLED_FOR_OTHERS)
        assert not unused, f"{env} pins {sorted(unused)}, which no rule using it imports"
