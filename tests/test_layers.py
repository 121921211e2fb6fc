"""The import-linter layers contract in pyproject.toml names every runtime module, so a new module cannot
slip past the layer check (import-linter checks only the modules its layers name)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _contract() -> tuple[list[str], list[list[str]]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    layers = [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]]
    return config["root_packages"], layers


def _modules(package: str) -> list[str]:
    """Importable modules of `package` (directories with an __init__.py all the way down)."""
    found = []
    base = ROOT / package
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if not all((ROOT.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join(parts))
    return found


def _layer_of(module: str, layers: list[list[str]]) -> list[int]:
    def inside(name: str) -> bool:
        return module == name or module.startswith(name + ".")

    return [i for i, layer in enumerate(layers) if any(inside(name) for name in layer)]


def test_every_runtime_module_is_in_exactly_one_layer() -> None:
    roots, layers = _contract()
    unplaced, doubled = [], []
    for package in roots:
        for module in _modules(package):
            if module in roots:  # a root package itself may hold layers of its own modules
                continue
            where = _layer_of(module, layers)
            if not where:
                unplaced.append(module)
            elif len(where) > 1:
                doubled.append(module)
    assert not unplaced, f"modules in no layer of pyproject's import-linter contract: {unplaced}"
    assert not doubled, f"modules in more than one layer: {doubled}"


def test_the_contract_names_only_modules_that_exist() -> None:
    roots, layers = _contract()
    existing = {m for package in roots for m in _modules(package)}
    missing = [m for layer in layers for m in layer if m not in existing]
    assert not missing, f"layers naming modules that do not exist: {missing}"
