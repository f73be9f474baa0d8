"""Each consumer gets a narrow port (architecture §2.3): the contexts listed here never name the
whole unit of work.

Their services take a factory of a unit of work typed as the repositories (and the methods of
each) they use, declared in the context's own ``ports`` module; mypy checks that the store's unit
of work satisfies each port where the composition root passes it (api.composition), and refuses
a reach outside the port inside the service. What mypy cannot see is a service declared with the
whole :class:`jpki.ports.UnitOfWork` again: it would type-check, and the narrowing would be
gone. This test is that check — an import-linter contract cannot make it, since the contexts
rightly import other names (Clock, the repository Protocols) from the same module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The contexts whose services are held to their narrow ports: every bounded context
# (architecture §2.3), the signing-password reset's included. Nothing in jpki.issuance or
# jpki.revocation needs the whole unit of work: the pipeline's is IssuanceUnitOfWork, the
# operator's revocation RevocationUnitOfWork, CRL publication the kernel's CrlUnitOfWork, the
# OCSP responder its own (jpki.revocation.ocsp.ports). What still takes it lies outside the
# contexts (architecture §2.5).
NARROWED = ("registry", "relying_parties", "mobile", "issuance", "revocation", "pin_reset")
WHOLE = frozenset({"UnitOfWork", "UnitOfWorkFactory"})


def _names(tree: ast.AST) -> set[str]:
    """The names of the whole unit of work that ``tree`` imports or uses in code or in an
    annotation (a quoted annotation is parsed too); prose in docstrings does not count."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found |= {a.name for a in node.names if a.name in WHOLE}
        elif isinstance(node, ast.Name) and node.id in WHOLE:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in WHOLE:
            found.add(node.attr)
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        for annotation in annotations:
            if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                found |= _names(ast.parse(annotation.value, mode="eval"))
    return found


def _modules(context: str) -> list[Path]:
    return sorted((ROOT / "jpki" / context).rglob("*.py"))


@pytest.mark.parametrize("context", NARROWED)
def test_the_context_never_names_the_whole_unit_of_work(context: str):
    modules = _modules(context)
    assert modules
    offenders = {str(p.relative_to(ROOT)): sorted(names) for p in modules
                 if (names := _names(ast.parse(p.read_text(encoding="utf-8"))))}
    assert offenders == {}


# Kernel modules held to narrow ports too: jpki.issuance_port is what mobile and issuance share
# (a device application verifies and settles inside issuance's transactions on MobileWork, so
# neither side can hand the other more than the port); the group commit's fallback batch and
# the jobs ledger take the kernel's GroupAuditUnitOfWork and JobsUnitOfWork.
NARROWED_KERNEL = ("issuance_port", "group_audit", "jobs")


@pytest.mark.parametrize("module", NARROWED_KERNEL)
def test_the_kernel_module_never_names_the_whole_unit_of_work(module: str):
    path = ROOT / "jpki" / f"{module}.py"
    assert _names(ast.parse(path.read_text(encoding="utf-8"))) == set()


@pytest.mark.parametrize("context", NARROWED)
def test_the_context_declares_its_ports(context: str):
    """The ports live in the context (jpki.<context>.ports), each a Protocol."""
    tree = ast.parse((ROOT / "jpki" / context / "ports.py").read_text(encoding="utf-8"))
    ports = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name.endswith("UnitOfWork")]
    assert ports
    for port in ports:
        assert "Protocol" in {b.id for b in port.bases if isinstance(b, ast.Name)}, port.name


@pytest.mark.parametrize("source", [
    "from jpki.ports import Clock, UnitOfWork\n",
    "import jpki.ports\ndef f(uow: jpki.ports.UnitOfWork) -> None: ...\n",
    "def f(uow: 'UnitOfWork') -> None: ...\n",
    "class S:\n    def __init__(self, f: 'Callable[[], UnitOfWorkFactory]') -> None: ...\n",
    "x: 'list[UnitOfWork]' = []\n",
])
def test_the_check_finds_the_whole_unit_of_work(source: str):
    assert _names(ast.parse(source))


def test_the_check_ignores_prose():
    assert not _names(ast.parse('"""Not the whole :class:`jpki.ports.UnitOfWork`."""\n'
                                "from jpki.ports import Clock\n"))
