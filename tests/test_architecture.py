"""The import boundaries of architecture §2, checked with import-linter contracts
(pyproject.toml)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jpki

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _contract(name_start: str) -> dict:
    (contract,) = [c for c in _contracts() if c["name"].startswith(name_start)]
    return contract


def _core() -> tuple[set[str], set[str]]:
    """jpki's top-level modules (the shared kernel) and its subpackages, the store aside."""
    found = [m for m in pkgutil.iter_modules(jpki.__path__) if m.name != "store"]
    return ({f"jpki.{m.name}" for m in found if not m.ispkg},
            {f"jpki.{m.name}" for m in found if m.ispkg})


def test_every_core_module_is_under_the_store_contract():
    """A new module or package of the core must be added to the contract that keeps it off the
    store adapter."""
    kernel, packages = _core()
    listed = set(_contract("The domain core does not depend on the store")["source_modules"])
    assert listed == kernel | packages


def test_every_kernel_module_is_held_below_the_contexts():
    """A new top-level module of jpki is part of the shared kernel: it must be listed in the
    contract that forbids the kernel to import the contexts and shared layers."""
    kernel, _ = _core()
    assert set(_contract("The shared kernel imports no context")["source_modules"]) == kernel


def test_every_core_package_is_a_layer():
    """A new subpackage of jpki must take its place in the layers contract (a context, or a shared
    layer), or it would escape the independence rule."""
    _, packages = _core()
    layers = _contract("Bounded contexts are independent")["layers"]
    named = {f"jpki.{name.strip()}" for layer in layers for name in layer.split("|")}
    assert named == packages
    kernel_forbids = set(_contract("The shared kernel imports no context")["forbidden_modules"])
    assert kernel_forbids == packages | {"jpki.store"}


def test_devices_may_reach_only_the_protocol_and_errors():
    """The devices contract forbids every part of the core except jpki.protocol and jpki.errors."""
    kernel, packages = _core()
    forbidden = set(_contract("Devices import only")["forbidden_modules"])
    assert forbidden >= (kernel | packages | {"jpki.store"}) - {"jpki.protocol", "jpki.errors"}
    assert not forbidden & {"jpki.protocol", "jpki.errors"}


def test_the_devices_contract_holds_without_exceptions():
    """No device module is let through to the core: what the phone needed of the mobile service
    (the proof-of-possession message, the kinds) is the protocol's now."""
    assert "ignore_imports" not in _contract("Devices import only")


def test_the_protocol_contract_names_the_kernel_but_the_errors():
    kernel, _ = _core()
    forbidden = set(_contract("The protocol imports only")["forbidden_modules"])
    assert forbidden >= (kernel - {"jpki.errors"}) | {"jpki.store", "api", "hsm", "devices"}
    assert "jpki.errors" not in forbidden


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_protocol_imports_only_the_standard_library_cryptography_and_the_errors():
    """An allow-list, which import-linter cannot express: devices take jpki.protocol with them,
    so it may need nothing the CA's deployment alone provides (architecture §2.3)."""
    allowed_roots = set(sys.stdlib_module_names) | {"cryptography", "asn1crypto"}
    found = {(path.name, name) for path in (ROOT / "jpki" / "protocol").glob("*.py")
             for name in _imports(path)
             if name.split(".")[0] not in allowed_roots and name != "jpki.errors"
             and not name.startswith("jpki.protocol.")}
    assert found == set()
