"""`manage.py sync_images` and `manage.py export_images`, as an operator or a script uses them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from imagesync.models import Image, Registry, Repository, SyncTask
from imagesync.registries.base import RegistryError
from imagesync.sync.run import SyncRun
from tests.support.fakes import FakeClient, image

ROOT = Path(__file__).resolve().parent.parent


def sync_images(*args: str) -> tuple[list[str], int]:
    out = io.StringIO()
    code = 0
    try:
        call_command("sync_images", *args, stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    return out.getvalue().splitlines(), code


def test_sync_images_prints_the_task_id_and_queues_the_task(db, project, registry):
    lines, code = sync_images("--project", "prod")
    task = SyncTask.objects.get()
    assert code == 0 and lines == [str(task.pk)]
    assert (task.status, task.scope, task.trigger) == ("queued", "all", "manual")


def test_sync_images_wait_runs_the_task_and_prints_progress(transactional_db, project, fakes):
    Registry.objects.create(
        project=project, kind="other", name="local", endpoint="https://l.example"
    )
    fakes["local"] = FakeClient({"team/api": [image("1.0"), image("2.0")], "web": [image("x")]})
    lines, code = sync_images("--project", "prod", "--wait")
    task = SyncTask.objects.get()
    assert code == 0
    assert lines[0] == str(task.pk)
    # Counted up and never back (two threads may end their repositories in either order).
    assert lines[1][:5] in ("[1/2]", "[2/2]") and lines[2][:5] == "[2/2]"
    assert any("local/team/api: 2 images (added 2" in line for line in lines)
    assert lines[-1] == (
        f"Task #{task.pk} succeeded: 2 repositories, 0 failed; images added 3, updated 0, "
        "removed 0, unchanged 0."
    )
    assert task.status == "succeeded" and Image.objects.count() == 3


def test_sync_images_wait_exits_non_zero_unless_the_task_succeeded(
    transactional_db, project, fakes
):
    Registry.objects.create(
        project=project, kind="other", name="local", endpoint="https://l.example"
    )
    fakes["local"] = FakeClient(
        {"a": [image("1")], "b": RegistryError("timeout", "l.example did not answer in time.")}
    )
    lines, code = sync_images("--project", "prod", "--wait")
    assert code == 1
    assert any("local/b: failed: timeout: l.example did not answer in time." in ln for ln in lines)
    assert "partially succeeded" in lines[-2]
    assert "did not answer in time" in lines[-1]


def test_sync_images_resolves_repository_paths_and_registry_prefixed_paths(db, project, registry):
    other = Registry.objects.create(
        project=project, kind="harbor", name="harbor", endpoint="https://h.example"
    )
    api = Repository.objects.create(registry=registry, type="other", path="team/api", name="api")
    web = Repository.objects.create(registry=other, type="harbor", path="team/web", name="web")
    Repository.objects.create(registry=other, type="harbor", path="team/api", name="api")

    lines, _ = sync_images("--project", "prod", "--repositories", "local/team/api,team/web")
    task = SyncTask.objects.get(pk=int(lines[0]))
    assert task.scope == "repositories"
    assert set(task.scope_repositories.all()) == {api, web}

    with pytest.raises(CommandError, match="'team/api' is ambiguous: harbor/team/api"):
        sync_images("--project", "prod", "--repositories", "team/api")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--project", "nope"], "Unknown project 'nope'."),
        (["--project", "prod", "--types", "other,docker"], "Unknown repository type 'docker'"),
        (["--project", "prod", "--repositories", "no/such"], "Unknown repository 'no/such'"),
        (["--project", "prod", "--repositories", ","], "needs at least one repository"),
        (
            ["--project", "prod", "--types", "other", "--repositories", "a"],
            "not allowed with argument",
        ),
    ],
)
def test_sync_images_bad_arguments_give_a_one_line_error(db, project, registry, args, message):
    with pytest.raises(CommandError) as error:
        sync_images(*args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not SyncTask.objects.exists()


def test_sync_images_refuses_while_a_sync_is_active(db, project, registry):
    active = SyncTask.objects.request(project)
    with pytest.raises(CommandError) as error:
        sync_images("--project", "prod", "--types", "other")
    assert (
        str(error.value) == f"A synchronization is already in progress: task #{active.pk} (queued)."
    )


def test_sync_images_from_the_shell_prints_no_traceback():
    answer = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "sync_images",
            "--project",
            "p",
            "--types",
            "x",
            "--repositories",
            "y",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode != 0
    assert "Traceback" not in answer.stderr
    assert "not allowed with argument" in answer.stderr
    help_text = subprocess.run(
        [sys.executable, "manage.py", "sync_images", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "REGISTRY-NAME/PATH" in help_text and "exits with" in help_text


# --- export ---------------------------------------------------------------------------------


@pytest.fixture
def stored(db, project, registry):
    created = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    api = Repository.objects.create(
        registry=registry,
        type="other",
        path="team/api",
        namespace="team",
        name="api",
        last_synced_at=created,
    )
    nginx = Repository.objects.create(
        registry=registry, type="other", path="nginx", name="nginx", last_synced_at=created
    )
    for repo, tag, platforms in [
        (api, "1.0", ["linux/amd64", "linux/arm64/v8"]),
        (api, "0.9", ["linux/amd64"]),
        (nginx, "latest", []),
    ]:
        Image.objects.create(
            project=project,
            repository=repo,
            tag=tag,
            digest="sha256:" + tag.replace(".", "") * 8,
            media_type="application/vnd.oci.image.index.v1+json",
            size=2048 if platforms else None,
            platforms=platforms,
            multi_arch=len(platforms) > 1,
            image_created_at=created if platforms else None,
            registry_updated_at=None,
        )
    return project


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_images", *args, stdout=out)
    return out.getvalue()


def test_export_json_is_one_array_of_records_with_every_field(stored):
    records = json.loads(export("--project", "prod", "--format", "json"))
    assert [(r["repository"], r["tag"]) for r in records] == [
        ("nginx", "latest"),
        ("team/api", "0.9"),
        ("team/api", "1.0"),
    ]
    assert records[2] == {
        "registry": "local",
        "type": "other",
        "namespace": "team",
        "repository": "team/api",
        "tag": "1.0",
        "digest": "sha256:" + "10" * 8,
        "size": 2048,
        "media_type": "application/vnd.oci.image.index.v1+json",
        "platforms": ["linux/amd64", "linux/arm64/v8"],
        "created": "2024-05-01T08:00:00+00:00",
        "updated": None,
        "last_synced": "2024-05-01T08:00:00+00:00",
        "name": "api",
        "multi_arch": True,
        "latest": False,
        "last_pulled": None,
        "pull_count": None,
        "pull_source": "none",
        "tagged": True,
    }
    assert records[0]["namespace"] == "" and records[0]["size"] is None


def test_export_csv_has_a_header_and_one_row_per_image(stored, tmp_path):
    target = tmp_path / "inventory.csv"
    call_command(
        "export_images",
        "--project",
        "prod",
        "--format",
        "csv",
        "--output",
        str(target),
        stderr=io.StringIO(),
    )
    rows = list(csv.DictReader(target.open(newline="")))
    assert len(rows) == 3
    assert list(rows[0]) == [
        "registry",
        "type",
        "namespace",
        "repository",
        "tag",
        "digest",
        "size",
        "media_type",
        "platforms",
        "created",
        "updated",
        "last_synced",
        "name",
        "multi_arch",
        "latest",
        "last_pulled",
        "pull_count",
        "pull_source",
        "tagged",
    ]
    assert rows[2]["platforms"] == "linux/amd64,linux/arm64/v8"
    assert rows[0]["size"] == "" and rows[0]["created"] == ""


def test_export_csv_cells_never_start_a_formula(stored, registry, login, viewer):
    """A registry name or a tag that a spreadsheet would run is written as plain text, in
    this export and in Image View's, which have the same columns."""
    registry.name = '=HYPERLINK("http://evil.example","x")'
    registry.save(update_fields=["name"])
    repository = Repository.objects.get(path="nginx")
    for tag in ("+1", "-rc", "@sum"):
        Image.objects.create(
            project=stored, repository=repository, tag=tag, digest="sha256:" + "f" * 64
        )
    command_rows = list(csv.DictReader(io.StringIO(export("--project", "prod", "--format", "csv"))))
    response = login(viewer).get("/images/export.csv")
    page_rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    for rows in (command_rows, page_rows):
        assert {row["registry"] for row in rows} == {'\'=HYPERLINK("http://evil.example","x")'}
        assert {"'+1", "'-rc", "'@sum"} <= {row["tag"] for row in rows}
    assert list(command_rows[0]) == list(page_rows[0])
    assert sorted(tuple(row.values()) for row in command_rows) == sorted(
        tuple(row.values()) for row in page_rows
    )
    # JSON is no spreadsheet: its values stay exactly as stored
    records = json.loads(export("--project", "prod"))
    assert records[0]["registry"] == '=HYPERLINK("http://evil.example","x")'


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_to_a_reader_that_left_stops_quietly(stored, fmt):
    """`export_images ... | head`: the reader closes the pipe early; no traceback."""
    call_command("export_images", "--project", "prod", "--format", fmt, stdout=_ClosedPipe())


def test_export_to_a_closed_os_pipe_leaves_nothing_to_complain_about(stored, monkeypatch):
    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    monkeypatch.setattr(sys, "stdout", pipe)
    call_command("export_images", "--project", "prod", "--format", "csv", stdout=pipe)
    pipe.close()  # the final flush goes to /dev/null instead of raising BrokenPipeError


def test_export_never_contains_the_registry_secret(stored):
    for fmt in ("json", "csv"):
        assert "PLANTED-SECRET" not in export("--project", "prod", "--format", fmt)


def test_export_of_an_empty_project_is_an_empty_array(db, other_project):
    assert json.loads(export("--project", "elsewhere")) == []


def test_export_of_an_unknown_project_is_a_one_line_error(db):
    with pytest.raises(CommandError, match="Unknown project 'nope'."):
        export("--project", "nope")


def test_sync_watchdog_interrupts_a_silent_task(db, project, registry):
    from datetime import timedelta

    from django.utils import timezone

    task = SyncTask.objects.request(project)
    assert SyncRun.claim(task.pk) is not None
    SyncTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    out = io.StringIO()
    call_command("sync_watchdog", stdout=out)
    assert out.getvalue().startswith("Interrupted 1 task(s)")
    task.refresh_from_db()
    assert task.status == SyncTask.Status.INTERRUPTED
