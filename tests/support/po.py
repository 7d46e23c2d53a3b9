"""A small reader of gettext .po catalogs for the translation checks (tests/test_i18n.py).

Reads what `makemessages` writes: comments, flags, msgctxt, msgid, msgid_plural, msgstr and
msgstr[n], with continued string lines; obsolete (`#~`) entries are kept apart.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return (self.msgctxt, self.msgid, self.msgid_plural)

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values())

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags


def _unquote(text: str) -> str:
    return ast.literal_eval(text.strip())


def read_po(path: Path) -> list[Entry]:
    """Every entry of the catalog but the header (msgid "")."""
    entries: list[Entry] = []
    current = Entry()
    target: tuple[str, int] | None = None
    seen_keyword = False

    def finish():
        nonlocal current, seen_keyword, target
        if seen_keyword and current.msgid:
            entries.append(current)
        current, seen_keyword, target = Entry(), False, None

    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            finish()
            continue
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
            current.obsolete = True
        if line.startswith("#,"):
            if seen_keyword:
                finish()
            current.flags.update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith("#"):
            if seen_keyword and not obsolete:
                finish()
            continue
        if line.startswith('"'):
            if target is None:
                continue
            name, index = target
            if name == "msgstr":
                current.msgstr[index] += _unquote(line)
            else:
                setattr(current, name, (getattr(current, name) or "") + _unquote(line))
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgctxt" and seen_keyword and current.msgstr:
            was_obsolete = current.obsolete
            finish()
            current.obsolete = was_obsolete
        seen_keyword = True
        if keyword.startswith("msgstr["):
            index = int(keyword[7:-1])
            current.msgstr[index] = _unquote(rest)
            target = ("msgstr", index)
        elif keyword == "msgstr":
            current.msgstr[0] = _unquote(rest)
            target = ("msgstr", 0)
        elif keyword in ("msgid", "msgid_plural", "msgctxt"):
            if keyword == "msgid" and current.msgstr:
                was_obsolete = current.obsolete
                finish()
                current.obsolete = was_obsolete
                seen_keyword = True
            setattr(current, keyword, _unquote(rest))
            target = (keyword, 0)
    finish()
    return entries
