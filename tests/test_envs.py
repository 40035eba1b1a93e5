"""The conda environments of the rules pin what pyproject.toml pins."""

import re
import tomllib

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
