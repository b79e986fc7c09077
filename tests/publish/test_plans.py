"""``symbol_publish.plans``: which file gets which key, and what is skipped and why.

The CLI tests see this through the fixtures (``test_scanning.py``); these check each rule on small
hand-made scans: keys compared ignoring case (the Symbol Service, SSQP) or exactly (a local store on
a case-sensitive disk); a second file under a key is a conflict unless it has the same bytes, and
two files of one size are not the same for that alone; an object the target has no key for says
why, each reason once, several joined with ``; ``.
"""

from __future__ import annotations

from pathlib import Path

from symbol_proxy.objects import DebugId
from symbol_publish.identities import Format, Identity
from symbol_publish.plans import Scanned, Skipped, plan

DEBUG_ID = DebugId.parse("99891b3e-d7ae-4c3b-abff-8a2b4a9b0c43-1")


def identity(name: str, fmt: Format = Format.PDB, **fields: object) -> Identity:
    values: dict[str, object] = {
        "name": name,
        "format": fmt,
        "kind": "dbg",
        "arch": "x86_64",
        "debug_id": DEBUG_ID,
        "code_id": None,
        **fields,
    }
    return Identity(**values)  # type: ignore[arg-type]


def scanned(relative: str, size: int, *identities: Identity) -> Scanned:
    return Scanned(Path("/build") / relative, relative, size, identities)


def key_is_name(found: Identity) -> list[str]:
    """A target whose one key for an object is its file name (enough to make keys collide)."""
    return [found.name]


def test_keys_differing_only_in_case_are_one_key_unless_the_target_compares_exactly() -> None:
    files = [
        scanned("a/Crash.pdb", 10, identity("Crash.pdb")),
        scanned("b/crash.pdb", 20, identity("crash.pdb")),
    ]

    folded = plan(files, key_is_name)
    assert [(e.key, e.file.relative) for e in folded.entries] == [("Crash.pdb", "a/Crash.pdb")]
    assert [(s.relative, s.category) for s in folded.skipped] == [("b/crash.pdb", "conflict")]
    assert folded.skipped[0].reason == "crash.pdb is already published from a/Crash.pdb"
    assert [f.relative for f in folded.files] == ["a/Crash.pdb"]

    exact = plan(files, key_is_name, case_insensitive=False)
    assert [(e.key, e.file.relative) for e in exact.entries] == [
        ("Crash.pdb", "a/Crash.pdb"),
        ("crash.pdb", "b/crash.pdb"),
    ]
    assert exact.skipped == () and exact.total_bytes == 30


def test_a_second_file_is_no_conflict_only_when_its_bytes_are_the_same() -> None:
    first, copy, other = (
        scanned("obj/crash.pdb", 10, identity("crash.pdb")),
        scanned("bin/crash.pdb", 10, identity("crash.pdb")),
        scanned("old/crash.pdb", 10, identity("crash.pdb")),
    )
    asked: list[tuple[str, str]] = []

    def same_content(a: Scanned, b: Scanned) -> bool:
        asked.append((a.relative, b.relative))
        return b is copy

    result = plan([first, copy, other], key_is_name, same_content=same_content)
    assert [e.file.relative for e in result.entries] == ["obj/crash.pdb"]
    # The copy with the same bytes is simply not needed; the file of the same size with other bytes
    # is a conflict (equal sizes alone prove nothing).
    assert [(s.relative, s.category) for s in result.skipped] == [("old/crash.pdb", "conflict")]
    assert asked == [("obj/crash.pdb", "bin/crash.pdb"), ("obj/crash.pdb", "old/crash.pdb")]
    # Files of another size are never compared: they cannot be the same.
    asked.clear()
    bigger = scanned("new/crash.pdb", 11, identity("crash.pdb"))
    assert [s.relative for s in plan([first, bigger], key_is_name, same_content=same_content).skipped] == [
        "new/crash.pdb"
    ]
    assert asked == []


def test_an_object_without_a_key_in_the_target_says_why_each_reason_once() -> None:
    no_module = identity("crash.sym", Format.BREAKPAD, module_name=None)
    wasm = identity("app.wasm", Format.WASM)
    universal = scanned("universal.sym", 5, no_module, no_module, wasm)
    placed_nowhere = scanned("crash.pdb", 5, identity("crash.pdb"))

    result = plan(
        [universal, placed_nowhere, Skipped("notes.txt", "not-debug", "not a debug file")], lambda _: []
    )
    assert result.entries == () and result.files == ()
    reasons = {s.relative: (s.category, s.reason) for s in result.skipped}
    assert reasons["universal.sym"] == ("no-identifier", f"{no_module.keyable()}; {wasm.keyable()}")
    # Keyable, but this target has no place for it: the caller's text, or by default this one.
    assert reasons["crash.pdb"] == ("no-identifier", "no key in this target")
    assert reasons["notes.txt"] == ("not-debug", "not a debug file")  # passed through

    custom = plan([placed_nowhere], lambda _: [], unplaced="the {format} format has no place here")
    assert custom.skipped[0].reason == "the pdb format has no place here"
