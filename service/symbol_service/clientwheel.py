"""The publish CLI as the wheel the service hands out at ``client/{clientType}`` (docs/publishing.md).

Pipelines on any OS with Python fetch the client that matches the server and ``pip install`` it.
The wheel is built from the service's own installed code, not shipped beside it:

* ``closure`` follows the imports of ``symbol_publish`` (compiled and read, never executed) through
  this distribution's packages, so the wheel holds exactly the modules the CLI can import (the
  publish package, the proxy's layouts and filesystem backend, the service's VSO-Hash), and the
  third-party top-level modules they name;
* ``requirements`` turns those into ``Requires-Dist`` lines with the version ranges this
  distribution declares for them (``symbolic`` carries native code, so it comes from PyPI as a
  binary wheel; that is why the client is a wheel and not a self-contained zipapp);
* ``build`` lays out a PEP 427 wheel (``METADATA``, ``WHEEL``, ``entry_points.txt`` with the
  ``symbol-publish`` console script, ``RECORD`` with SHA-256 hashes). Entries carry a fixed date, so
  every replica builds the same bytes and the same ``ETag``.

``build`` and ``requirements`` are pure; ``closure`` and ``from_installed`` read the installed sources.
"""

from __future__ import annotations

import base64
import dataclasses
import dis
import hashlib
import importlib.metadata
import importlib.util
import io
import re
import sys
import types
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

__all__ = ["DISTRIBUTION", "ClientWheel", "build", "closure", "from_installed", "requirements"]

DISTRIBUTION = "symbol-publish"
"""The wheel's distribution name (its modules overlap ``symbol-operator``'s: install it on its own)."""
ROOT = "symbol_publish"
OURS = ("symbol_proxy", "symbol_service", "symbol_publish")
"""Our top-level packages; any other non-stdlib import is a third-party requirement."""
SOURCE_DISTRIBUTION = "symbol-operator"
ENTRY_POINTS = "[console_scripts]\nsymbol-publish = symbol_publish.cli:main\n"
_DATE = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class ClientWheel:
    filename: str
    version: str
    data: bytes
    etag: str
    """Quoted, from the wheel's SHA-256: the same on every replica serving the same code."""


def _imported(code: types.CodeType, module: str, is_package: bool) -> set[str]:
    """Every absolute module name the compiled source imports, function-local imports included.

    Read from the bytecode (``IMPORT_NAME``, after the constants ``level`` and ``fromlist``, as
    ``modulefinder`` reads it), not from ``ast``: CPython 3.11 can fail converting a syntax tree
    while another thread does the same (``AST constructor recursion depth mismatch``).
    """
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    instructions = list(dis.get_instructions(code))
    for index, instruction in enumerate(instructions):
        if instruction.opname != "IMPORT_NAME" or index < 2:
            continue
        level, fromlist = instructions[index - 2].argval, instructions[index - 1].argval
        base = str(instruction.argval)
        if isinstance(level, int) and level > 0:
            parent = package.rsplit(".", level - 1)[0] if level > 1 else package
            base = f"{parent}.{base}" if base else parent
        names.add(base)
        if isinstance(fromlist, tuple):
            names.update(f"{base}.{name}" for name in fromlist if name != "*")  # maybe submodules
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _imported(constant, module, is_package)
    return names


def closure(
    roots: Iterable[str], find: Callable[[str], tuple[Path, bool] | None]
) -> tuple[dict[str, Path], set[str]]:
    """Our modules ``roots`` need (module → source file) and the third-party top-level names.

    ``find(module)`` is ``(source path, is_package)`` or ``None`` when no such module of ours exists
    (``from pkg import name`` names a module or an attribute: only modules are followed).
    """
    modules: dict[str, Path] = {}
    third_party: set[str] = set()
    queue = list(roots)
    while queue:
        module = queue.pop()
        if module in modules:
            continue
        found = find(module)
        if found is None:
            continue
        path, is_package = found
        modules[module] = path
        parent = module.rpartition(".")[0]
        if parent:
            queue.append(parent)  # importing a.b.c runs a/__init__ and a/b/__init__ first
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        for name in _imported(code, module, is_package):
            top = name.partition(".")[0]
            if top in OURS:
                queue.append(name)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return modules, third_party


def _find_ours(module: str) -> tuple[Path, bool] | None:
    """Where one of our modules' source is, found on disk below its top-level package: looking a
    submodule up with ``importlib`` would import (run) its parents."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        base = Path(location).joinpath(*rest)
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if rest and base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(
    imports: Iterable[str], declared: Iterable[str], distributions: Mapping[str, list[str]]
) -> list[str]:
    """``Requires-Dist`` lines for the third-party ``imports``.

    ``declared`` are this distribution's own requirements (``importlib.metadata.requires``), whose
    version ranges and platform markers are kept and whose ``extra == …`` markers are dropped (the
    client needs the ``publish`` extra's packages unconditionally). ``distributions`` maps import
    names to distribution names (``importlib.metadata.packages_distributions``); an import name no
    installed distribution provides is taken as the distribution's name. An import that this
    distribution does not declare is an error: the wheel would not install what it needs.
    """
    by_name: dict[str, str] = {}
    for line in declared:
        requirement, _, marker = line.partition(";")
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match is None:
            continue
        clauses = [
            c.strip() for c in re.split(r"\band\b", marker) if c.strip() and not c.strip().startswith("extra")
        ]
        text = requirement.strip() + (f"; {' and '.join(clauses)}" if clauses else "")
        by_name.setdefault(_normalize(match.group(1)), text)
    result = set()
    for name in imports:
        candidates = [_normalize(d) for d in distributions.get(name, [name])]
        found = [by_name[c] for c in candidates if c in by_name]
        if not found:
            raise LookupError(
                f"the publish CLI imports {name!r}, which {SOURCE_DISTRIBUTION} does not declare"
            )
        result.add(found[0])
    return sorted(result)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build(version: str, files: Mapping[str, bytes], requires: Iterable[str], summary: str) -> ClientWheel:
    """A pure-Python wheel of ``files`` (archive name → bytes) with the console script."""
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {DISTRIBUTION}\n",
            f"Version: {version}\n",
            f"Summary: {summary}\n",
            "Requires-Python: >=3.11\n",
            *(f"Requires-Dist: {line}\n" for line in requires),
        ]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: symbol-service\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = dict(sorted(files.items()))
    members[f"{dist_info}/METADATA"] = metadata.encode()
    members[f"{dist_info}/WHEEL"] = wheel.encode()
    members[f"{dist_info}/entry_points.txt"] = ENTRY_POINTS.encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    data = buffer.getvalue()
    filename = f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"
    return ClientWheel(filename, version, data, f'"{hashlib.sha256(data).hexdigest()}"')


def from_installed() -> ClientWheel:
    """The wheel of the publish CLI this service runs with (blocking: call it in a thread, once).

    Raises ``LookupError`` when the CLI's sources or a requirement cannot be found.
    """
    package = _find_ours(ROOT)
    if package is None:
        raise LookupError(f"the {ROOT} package is not installed beside the service")
    # Every module of the CLI's package (its __init__ imports none of them), and what they import.
    roots = [
        ROOT,
        *(f"{ROOT}.{p.stem}" for p in sorted(package[0].parent.glob("*.py")) if p.stem != "__init__"),
    ]
    modules, third_party = closure(roots, _find_ours)
    files = {}
    for module, path in modules.items():
        parts = module.split(".")
        name = "/".join([*parts, "__init__.py"]) if path.name == "__init__.py" else "/".join(parts) + ".py"
        files[name] = path.read_bytes()
    try:
        version = importlib.metadata.version(SOURCE_DISTRIBUTION)
        declared = importlib.metadata.requires(SOURCE_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise LookupError(f"the {SOURCE_DISTRIBUTION} distribution is not installed") from None
    requires = requirements(third_party, declared, importlib.metadata.packages_distributions())
    return build(version, files, requires, "symbol-publish: publish debug files into a Symbol Service")
