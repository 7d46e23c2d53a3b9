"""`manage.py export_changes`: a project's recorded changes for scripts, as JSON or CSV, with
the fields time, kind, registry, type, namespace, repository, tag, old_digest, new_digest,
task -- the same columns as the Changes tab's Export CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.support.changes import build_history
from tests.support.web import body_of

ROOT = Path(__file__).resolve().parent.parent
FIELDS = [
    "time",
    "kind",
    "registry",
    "type",
    "namespace",
    "repository",
    "tag",
    "old_digest",
    "new_digest",
    "task",
]


@pytest.fixture
def history(db, project):
    return build_history(project)


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_changes", *args, stdout=out)
    return out.getvalue()


def test_json_holds_every_change_oldest_first_with_exactly_the_fields(history):
    records = json.loads(export("--project", "prod", "--format", "json"))
    assert [list(record) for record in records] == [FIELDS] * 6
    assert [(r["kind"], r["tag"]) for r in records] == [
        ("added", "v1"),
        ("added", "v2"),
        ("added", "w1"),
        ("repushed", "v1"),
        ("added", "v3"),
        ("removed", "v2"),
    ]
    repushed = records[3]
    assert repushed == {
        "time": "2026-11-02T08:00:00+00:00",
        "kind": "repushed",
        "registry": "reg-hist",
        "type": "other",
        "namespace": "team-hist",
        "repository": "team-hist/api",
        "tag": "v1",
        "old_digest": history.v1_old,
        "new_digest": history.v1_new,
        "task": history.second.pk,
    }
    assert records[5]["new_digest"] == "" and records[0]["old_digest"] == ""


def test_since_and_until_take_a_day_or_an_instant(history):
    day2 = json.loads(export("--project", "prod", "--since", "2026-11-02"))
    assert [(r["kind"], r["tag"]) for r in day2] == [
        ("repushed", "v1"),
        ("added", "v3"),
        ("removed", "v2"),
    ]
    day1 = json.loads(export("--project", "prod", "--until", "2026-11-01T23:59:59Z"))
    assert {r["task"] for r in day1} == {history.first.pk}


def test_csv_matches_the_changes_tabs_export(history, login, viewer, tmp_path):
    target = tmp_path / "changes.csv"
    err = io.StringIO()
    call_command(
        "export_changes",
        "--project",
        "prod",
        "--format",
        "csv",
        "--output",
        str(target),
        stderr=err,
    )
    assert f"Wrote 6 changes to {target}." in err.getvalue()
    command_rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert list(command_rows[0]) == FIELDS
    assert command_rows[0]["task"] == str(history.first.pk)
    page = body_of(login(viewer).get("/changes/export.csv", {"sort": "time"}))
    assert [tuple(r.values()) for r in csv.DictReader(io.StringIO(page))] == [
        tuple(r.values()) for r in command_rows
    ]


def test_csv_cells_never_start_a_formula(history):
    from imagesync.history import Change

    Change.objects.filter(tag="v3").update(registry_name="=cmd|'/c calc'!A1")
    rows = list(csv.DictReader(io.StringIO(export("--project", "prod", "--format", "csv"))))
    assert "'=cmd|'/c calc'!A1" in {row["registry"] for row in rows}


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_left_stops_it_quietly(history):
    """`export_changes ... | head`: the reader closes the pipe early; no traceback."""
    call_command("export_changes", "--project", "prod", "--format", "csv", stdout=_ClosedPipe())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--project", "nope"], "Unknown project 'nope'."),
        (["--project", "prod", "--since", "last week"], "--since: Give a day (YYYY-MM-DD)"),
        (["--project", "prod", "--until", "2026-02-30"], "--until: Give a day (YYYY-MM-DD)"),
    ],
)
def test_bad_arguments_are_one_clear_line(history, args, message):
    with pytest.raises(CommandError) as error:
        export(*args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_from_the_shell_a_bad_date_exits_non_zero_without_a_traceback():
    answer = subprocess.run(
        [sys.executable, "manage.py", "export_changes", "--project", "x", "--since", "soon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode != 0
    assert "Traceback" not in answer.stderr
    assert len(answer.stderr.strip().splitlines()) == 1
