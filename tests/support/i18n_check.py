"""The translation checks CI runs (tests/test_i18n.py), also usable by hand:

    .venv/bin/python -m tests.support.i18n_check

* `unmarked_template_text()`: user-visible text in a template that is not inside
  {% translate %} / {% blocktranslate %} (text between tags and the title, aria-label,
  placeholder and alt attributes), and English-only filters (`pluralize`, `default:"word"`).
* `makemessages_entries()`: the entries `makemessages` would write, produced in a temporary
  copy of the sources, so the checkout is not touched.
* `catalog_problems()`: entries missing from the committed catalog, untranslated or fuzzy,
  and a compiled .mo that does not hold exactly the .po's translations.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from django.template.base import Lexer, TokenType

from tests.support.po import Entry, read_po

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
LOCALE = ROOT / "locale"
LANGUAGES = ("zh_Hans",)
# What makemessages reads: the apps, the settings and the templates (never .venv or tests).
SOURCES = ("apitokens", "console", "imagesync", "templates", "manage.py")
MAKEMESSAGES_ARGS = ("--add-location=file", "--no-obsolete", "--ignore=migrations/*")

# Words that are the same in every language: proper names, protocols, formats and symbols.
ALLOWED_WORDS = {
    "SWR",
    "Harbor",
    "JFrog",
    "Artifactory",
    "OCI",
    "Docker",
    "Huawei",
    "CSV",
    "JSON",
    "HTTP",
    "HTTPS",
    "TLS",
    "URL",
    "ID",
    "API",
    "v2",
    "sha256",
}
VISIBLE_ATTRIBUTES = {"title", "aria-label", "placeholder", "alt", "aria-description"}
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
# `pluralize` is English grammar; `default:"never"` a string nobody translates (a CSS class
# such as `default:'info'` is not text).
ENGLISH_FILTERS = re.compile(
    r"\|\s*pluralize\b|\|\s*default:\s*[\"'](?!info[\"'])[^\"']*[A-Za-z]{2}"
)
PLACEHOLDER = "\x00"


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value:
                self.pieces.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.pieces.append(data)


# --- a rendered page --------------------------------------------------------------------------

# Words a page in another language may still show: proper names, formats and units, the name
# of the English language in the language switch, parameter values.
PAGE_ALLOWED_WORDS = ALLOWED_WORDS | {
    "CA", "AK", "PEM", "ISO", "YYYY", "MM", "DD", "MiB", "KiB", "GiB", "TiB",
    "English", "true", "false",
}  # fmt: skip
_PAGE_WORD = re.compile(r"[A-Za-z]{2,}")
# A token that is data, not words: URLs, paths, versions, codes, digests, times.
_DATA_TOKEN = re.compile(r"://|[/_.:@#\d]|^-|-$")
_SEPARATORS = re.compile(r"[\s,;()（）：，。、“”\"'·|›‹▲▼↕✓✕◷↻⊘⚠»◐•]+")


def page_english_words(text: str, data: set[str] = frozenset()) -> list[str]:
    """English words in a page's visible text that are neither allowed names nor data (the
    strings in `data`, and tokens that look like URLs, paths, codes or numbers)."""
    for value in sorted(filter(None, data), key=len, reverse=True):
        text = text.replace(value, " ")
    found = []
    for token in _SEPARATORS.split(text):
        if token and not _DATA_TOKEN.search(token):
            found += [w for w in _PAGE_WORD.findall(token) if w not in PAGE_ALLOWED_WORDS]
    return found


def html_visible_text(html: str) -> str:
    """The text of an HTML page and its title, aria-label, placeholder and alt attributes."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return "\n".join(parser.pieces)


def _english_words(text: str) -> list[str]:
    return [w for w in WORD.findall(text) if w not in ALLOWED_WORDS and len(w) > 1]


def template_text(source: str) -> tuple[str, list[str]]:
    """The template with every tag, variable, comment and translated block replaced by a
    placeholder (so only literal text is left), and the English-only filters it uses."""
    out: list[str] = []
    problems: list[str] = []
    depth_comment = 0
    in_blocktranslate = False
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents else ""
            if name == "comment":
                depth_comment += 1
            elif name == "endcomment":
                depth_comment -= 1
            elif name in ("blocktranslate", "blocktrans"):
                in_blocktranslate = True
            elif name in ("endblocktranslate", "endblocktrans"):
                in_blocktranslate = False
            if ENGLISH_FILTERS.search(token.contents):
                problems.append(f"{{% {token.contents} %}}")
            out.append(PLACEHOLDER)
        elif token.token_type == TokenType.VAR:
            if ENGLISH_FILTERS.search(token.contents):
                problems.append(f"{{{{ {token.contents} }}}}")
            out.append(PLACEHOLDER)
        elif token.token_type == TokenType.COMMENT:
            out.append(PLACEHOLDER)
        elif depth_comment or in_blocktranslate:
            out.append(PLACEHOLDER)
        else:
            out.append(token.contents)
    return "".join(out), problems


def unmarked_template_text(root: Path = TEMPLATES) -> dict[str, list[str]]:
    """{template: [English words or filters not marked for translation]} for every template."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.html")):
        text, problems = template_text(path.read_text(encoding="utf-8"))
        parser = _VisibleText()
        parser.feed(text)
        parser.close()
        words = [w for piece in parser.pieces for w in _english_words(piece)]
        if words or problems:
            found[str(path.relative_to(root))] = problems + words
    return found


def makemessages_entries(language: str) -> list[Entry]:
    """The entries makemessages writes for `language`, run in a temporary copy of the sources
    (with the committed catalog, as makemessages merges into it)."""
    with tempfile.TemporaryDirectory(prefix="imagesync-makemessages-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        for name in SOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(
                    source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(source, copy / name)
        if LOCALE.exists():
            shutil.copytree(LOCALE, copy / "locale")
        (copy / "locale").mkdir(exist_ok=True)
        env = {**os.environ, "IMAGESYNC_VAR_DIR": str(Path(tmp) / "var")}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-l", language, *MAKEMESSAGES_ARGS],
            cwd=copy,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return read_po(copy / "locale" / language / "LC_MESSAGES" / "django.po")


def _catalog_of(entries: list[Entry]) -> dict:
    """The .po's translations keyed as Python's gettext keys a compiled catalog."""
    catalog: dict = {}
    for entry in entries:
        if entry.obsolete or entry.fuzzy or not entry.translated:
            continue
        msgid = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if entry.msgid_plural is None:
            catalog[msgid] = entry.msgstr[0]
        else:
            for index, text in entry.msgstr.items():
                catalog[(msgid, index)] = text
    return catalog


def compiled_catalog(mo: Path) -> dict:
    with mo.open("rb") as handle:
        translations = gettext.GNUTranslations(handle)
    return {key: value for key, value in translations._catalog.items() if key != ""}


def catalog_problems(language: str, with_makemessages: bool = True) -> list[str]:
    """Everything that would make the committed catalog of `language` wrong or incomplete."""
    directory = LOCALE / language / "LC_MESSAGES"
    po, mo = directory / "django.po", directory / "django.mo"
    if not po.exists():
        return [f"{po.relative_to(ROOT)} is missing"]
    committed = [e for e in read_po(po) if not e.obsolete]
    problems = []
    for entry in committed:
        if entry.fuzzy:
            problems.append(f"fuzzy: {entry.msgid!r}")
        elif not entry.translated:
            problems.append(f"untranslated: {entry.msgid!r}")
    if with_makemessages:
        keys = {entry.key for entry in committed}
        for entry in makemessages_entries(language):
            if not entry.obsolete and entry.key not in keys:
                problems.append(f"not in the committed catalog: {entry.msgid!r}")
    if not mo.exists():
        problems.append(f"{mo.relative_to(ROOT)} is missing (run compilemessages)")
    elif compiled_catalog(mo) != _catalog_of(committed):
        problems.append(f"{mo.relative_to(ROOT)} is stale (run compilemessages)")
    return problems


if __name__ == "__main__":  # pragma: no cover - by hand
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    django.setup()
    for template, words in unmarked_template_text().items():
        print(f"{template}: {', '.join(words)}")
    for language in LANGUAGES:
        for problem in catalog_problems(language):
            print(f"{language}: {problem}")
