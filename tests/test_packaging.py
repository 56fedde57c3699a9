"""Packaging facts that drift silently: licences, extras, requirement sets and README links.

The built wheel itself is checked in ``test_slim_install.py`` (slow).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def floors(requirements: list[str]) -> dict[str, str]:
    """name -> the version after >= (or ==) for each requirement string."""
    found = {}
    for text in requirements:
        req = Requirement(text)
        for spec in req.specifier:
            if spec.operator in (">=", "=="):
                found[req.name.lower()] = spec.version
    return found


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def declared_floors() -> dict[str, str]:
    """Every floor in pyproject: the dependencies and the user-facing extras."""
    everything = list(PROJECT["dependencies"])
    for reqs in PROJECT["optional-dependencies"].values():
        everything += [r for r in reqs if not r.startswith("mnist-classifier")]
    return floors(everything)


def test_licences_are_spdx_and_shipped() -> None:
    assert PROJECT["license"] == "MIT AND CC-BY-SA-3.0"
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # PEP 639
    for name in PROJECT["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    data_licence = ROOT / "src" / "mnist_classifier" / "data" / "files" / "LICENSE"
    text = data_licence.read_text()
    assert "CC BY-SA 3.0" in text and "Yann LeCun" in text and "Corinna Cortes" in text
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["mnist_classifier"]
    assert "data/files/LICENSE" in package_data
    assert (
        int(re.search(r"setuptools>=(\d+)", " ".join(PYPROJECT["build-system"]["requires"]))[1])
        >= 77
    )


def test_the_packaged_data_licence_is_readable_from_the_installed_package() -> None:
    from importlib import resources

    text = (resources.files("mnist_classifier") / "data" / "files" / "LICENSE").read_text()
    assert "CC-BY-SA-3.0" in text


def test_development_tools_are_a_dependency_group_not_an_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    assert "dev" not in extras
    dev = " ".join(PYPROJECT["dependency-groups"]["dev"])
    for tool in ("pytest", "ruff", "mypy"):
        assert tool in dev
    for tool in ("pytest", "ruff", "mypy", "playwright"):
        assert not any(tool in " ".join(reqs) for reqs in extras.values()), tool


def test_every_extra_says_what_it_is_for() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("[project.optional-dependencies]") : text.index("[dependency-groups]")]
    lines = block.splitlines()
    for extra in PROJECT["optional-dependencies"]:
        (i,) = [i for i, line in enumerate(lines) if line.startswith(f"{extra} = ")]
        assert lines[i - 1].startswith("# "), f"extra {extra!r} has no comment above it"
    readme = (ROOT / "README.md").read_text()
    for extra in PROJECT["optional-dependencies"]:
        assert f"| `{extra}` |" in readme, f"extra {extra!r} is missing from the README's table"


def test_the_inference_requirements_have_the_floors_of_pyproject() -> None:
    slim = floors(requirement_lines(ROOT / "requirements" / "inference.txt"))
    declared = declared_floors()
    assert set(slim) == {
        "numpy",
        "pillow",
        "onnxruntime",
        "fastapi",
        "uvicorn",
        "python-multipart",
        "prometheus-client",
        "fastapi-offline",
        "shtab",
    }
    for name, version in slim.items():
        assert declared[name] == version, name
    assert "torch" not in slim and "matplotlib" not in slim


def test_the_floor_versions_are_those_of_pyproject() -> None:
    pinned = floors(requirement_lines(ROOT / "requirements" / "floors.txt"))
    declared = declared_floors()
    checked = ("numpy", "pillow", "matplotlib", "tqdm", "shtab", "fastapi", "uvicorn")
    checked += ("python-multipart", "onnxruntime", "prometheus-client", "fastapi-offline")
    for name in checked:
        floor = declared[name]
        # The pin is the declared floor, or (numpy) the lowest one that the other floors accept.
        assert pinned[name].startswith(floor), (name, pinned[name], floor)


def test_direct_dependencies_are_pinned_in_constraints() -> None:
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in requirement_lines(ROOT / "constraints.txt")
    }
    for name in declared_floors():
        assert name in pinned, name


@pytest.mark.parametrize(
    "url", re.findall(r"\]\((https://[^)]+/docs/[^)]+)\)", (ROOT / "README.md").read_text())
)
def test_readme_pictures_are_absolute_urls_of_files_in_the_repository(url: str) -> None:
    source = PROJECT["urls"]["Source"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{source}/main/"
    assert url.startswith(prefix), url
    assert (ROOT / url.removeprefix(prefix)).is_file(), url


def test_readme_has_no_relative_pictures() -> None:
    readme = (ROOT / "README.md").read_text()
    relative = [u for u in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme) if "://" not in u]
    assert relative == []


def test_the_readme_slim_install_lists_the_inference_requirements() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Inference only") : readme.index("## Quick start")]
    command = section[
        section.index("pip install --no-deps") : section.index("mnist-classifier predict")
    ]
    quoted = re.findall(r"'([^']+)'", command)
    assert sorted(quoted) == sorted(requirement_lines(ROOT / "requirements" / "inference.txt"))
