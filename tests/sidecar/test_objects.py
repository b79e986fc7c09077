"""Debug ids, file names and queries (``symbol_proxy.objects``), the forms the manifest does not
reach (found by mutation testing, see ``docs/testing.md``): compact and PDB 2.0 debug ids, long
ages, Breakpad id bounds, the display form, and which file names are usable."""

from __future__ import annotations

import uuid

import pytest

from symbol_proxy.objects import DebugId, InvalidId, ObjectQuery, ObjectType, basename

GUID = uuid.UUID("3249d99d-0c40-4931-8610-f4e4fb0b6936")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3249d99d-0c40-4931-8610-f4e4fb0b6936", DebugId(GUID, 0)),
        (" 3249D99D-0C40-4931-8610-F4E4FB0B6936-1a ", DebugId(GUID, 0x1A)),
        ("3249d99d-0c40-4931-8610-f4e4fb0b6936-123456789", DebugId(GUID, 0x12345678)),  # age: 8 digits
        ("3249D99D0C4049318610F4E4FB0B6936", DebugId(GUID, 0)),
        ("3249D99D0C4049318610F4E4FB0B69361", DebugId(GUID, 1)),
        ("3249D99D0C4049318610F4E4FB0B6936FFFFFFFF", DebugId(GUID, 0xFFFFFFFF)),
        ("3249D99D0C4049318610F4E4FB0B6936123456789", DebugId(GUID, 0x12345678)),  # age: 8 digits
        ("5AB380771", DebugId(uuid.UUID(bytes=bytes.fromhex("5ab38077") + bytes(12)), 1)),  # PDB 2.0
        ("5AB38077000000FF", DebugId(uuid.UUID(bytes=bytes.fromhex("5ab38077") + bytes(12)), 0xFF)),
    ],
)
def test_debug_ids_parse_in_every_form(text: str, expected: DebugId) -> None:
    assert DebugId.parse(text) == expected


@pytest.mark.parametrize("text", ["", "xyz", "5AB38077", "1" * 17, "1" * 31, "3249d99d-0c40-4931-8610"])
def test_other_texts_are_not_debug_ids(text: str) -> None:
    with pytest.raises(InvalidId, match="not a debug id"):
        DebugId.parse(text)


def test_a_breakpad_id_has_33_to_40_digits() -> None:
    assert DebugId.parse_breakpad("3249D99D0C4049318610F4E4FB0B69361") == DebugId(GUID, 1)
    assert DebugId.parse_breakpad("3249D99D0C4049318610F4E4FB0B693612345678") == DebugId(GUID, 0x12345678)
    for text in ("3249D99D0C4049318610F4E4FB0B6936", "3249D99D0C4049318610F4E4FB0B6936123456789"):
        with pytest.raises(InvalidId, match="not a breakpad id"):
            DebugId.parse_breakpad(text)


def test_the_display_form_shows_an_age_only_when_there_is_one() -> None:
    assert str(DebugId(GUID, 0)) == "3249d99d-0c40-4931-8610-f4e4fb0b6936"
    assert str(DebugId(GUID, 0x1A)) == "3249d99d-0c40-4931-8610-f4e4fb0b6936-1a"
    assert DebugId(GUID, 0x1A).breakpad() == "3249D99D0C4049318610F4E4FB0B69361a"


def test_only_the_all_zero_id_is_nil() -> None:
    assert DebugId(uuid.UUID(int=0)).is_nil()
    assert not DebugId(uuid.UUID(int=0), 1).is_nil()
    assert not DebugId(GUID).is_nil()


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("C:\\projects\\crash.pdb", "crash.pdb"),
        ("/usr/lib/libc.so.6", "libc.so.6"),
        ("build/out/", "out"),
        ("build/outX/", "outX"),
        ("build\\out\\\\", "out"),
        ("my lib.so ", "my lib.so "),  # spaces are part of a name
        ("a b", "a b"),
        ("caf\u00e9.dll", "caf\u00e9.dll"),
        ("x\u00a0y", "x\u00a0y"),  # NBSP is not a control character
        ("a" * 255, "a" * 255),
        ("", None),
        ("/", None),
        ("a" * 256, None),
        ("\u00e9" * 128, None),  # 256 bytes in UTF-8
        ("a\tb", None),
        ("a\x7fb", None),
        ("a\x9fb", None),
    ],
)
def test_a_usable_basename(path: str, name: str | None) -> None:
    assert basename(path) == name


def test_a_query_normalises_ids_and_drops_empty_strings() -> None:
    query = ObjectQuery.create(
        code_id="5AB38077-9000",
        code_file="",
        debug_id="3249D99D0C4049318610F4E4FB0B69361",
        debug_file="",
        debug_checksum="SHA256:AB",
        object_type="pe",
    )
    assert query == ObjectQuery(
        code_id="5ab380779000",
        debug_id=DebugId(GUID, 1),
        debug_checksum="SHA256:AB",
        object_type=ObjectType.PE,
    )
    assert ObjectQuery.create(code_id="", debug_checksum="") == ObjectQuery()
