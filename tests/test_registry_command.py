"""`manage.py registry` and `manage.py rotate_encryption_key`, as automation uses them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import responses
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.test import override_settings

from imagesync import crypto
from imagesync.models import AuditEvent, Registry

ROOT = Path(__file__).resolve().parent.parent
SECRET = "stdin-only-S3CRET-value"


def run(*args, stdin: str = ""):
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("registry", *args, stdout=out, stderr=err)
    finally:
        sys.stdin = old_stdin
    return out.getvalue()


def test_add_reads_the_secret_from_standard_input_and_stores_it_encrypted(project):
    output = run(
        "add",
        "--project", "prod",
        "--kind", "harbor",
        "--name", "harbor-prod",
        "--url", "https://harbor.example.com",
        "--username", "robot$ci",
        "--password-stdin",
        "--option", "projects=library,team",
        "--option", "max_concurrency=4",
        stdin=SECRET + "\n",
    )  # fmt: skip
    assert "Added registry 'harbor-prod'" in output and SECRET not in output
    registry = Registry.objects.get(name="harbor-prod")
    assert registry.kind == "harbor" and registry.username == "robot$ci"
    assert registry.options == {"projects": ["library", "team"], "max_concurrency": 4}
    assert registry.get_secret() == SECRET and SECRET not in registry.secret_encrypted
    assert AuditEvent.objects.filter(action="registry.create", target="harbor-prod").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--project", "nope", "--kind", "other", "--name", "r", "--url", "https://r.example"], "Unknown project"),
        (["--project", "prod", "--kind", "other", "--name", "r", "--url", "not a url"], "Enter a valid URL"),
        (["--project", "prod", "--kind", "other", "--name", "r", "--url", "http://r.example"], "--insecure-http"),
        (["--project", "prod", "--kind", "other", "--name", "r", "--url", "https://r.example", "--option", "oops"], "key=value"),
        (["--project", "prod", "--kind", "other", "--name", "r", "--url", "https://r.example", "--password-stdin"], "standard input was empty"),
    ],
)  # fmt: skip
def test_add_refuses_bad_arguments_with_a_clear_error(project, args, message):
    with pytest.raises(CommandError, match=message):
        run("add", *args)
    assert not Registry.objects.exists()


def test_add_refuses_a_second_registry_with_the_same_name(project, registry):
    with pytest.raises(CommandError, match="already has a registry with this name"):
        run(
            "add",
            "--project",
            "prod",
            "--kind",
            "other",
            "--name",
            "local",
            "--url",
            "https://x.example",
        )


def test_list_shows_the_registries_without_their_secret(registry):
    output = run("list")
    assert "local" in output and "other" in output and "prod" in output
    assert "PLANTED" not in output
    assert run("list", "--project", "prod").count("local") == 1


@responses.activate
def test_test_stores_a_successful_check(registry):
    responses.get("https://registry.example.com/v2/", json={}, status=200)
    output = run("test", "local")
    assert "succeeded" in output
    registry.refresh_from_db()
    assert registry.connection_status == "success" and registry.connection_checked_at


@responses.activate
def test_test_exits_non_zero_and_stores_the_reason_on_failure(registry):
    responses.get(
        "https://registry.example.com/v2/",
        status=401,
        json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
    )
    with pytest.raises(CommandError, match="auth_failed") as failure:
        run("test", "local")
    assert "PLANTED" not in str(failure.value)
    registry.refresh_from_db()
    assert registry.connection_status == "fail"
    assert registry.connection_reason_code == "auth_failed"


def test_remove_deletes_the_registry_and_its_inventory(registry):
    from imagesync.models import Repository

    Repository.objects.create(registry=registry, type="other", path="a/b", name="b")
    assert "Removed" in run("remove", "local", "--project", "prod")
    assert not Registry.objects.exists() and not Repository.objects.exists()
    with pytest.raises(CommandError, match="Unknown registry"):
        run("remove", "local")


def test_bad_arguments_on_the_command_line_give_one_line_and_no_traceback(db):
    env = {**os.environ}
    for args in (["registry"], ["registry", "add", "--kind", "bogus"], ["registry", "test"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_rotating_the_encryption_key_re_encrypts_every_secret(registry, tmp_path):
    old = crypto.configured_keys()[0]
    new = Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[new, old]):
        call_command("rotate_encryption_key", stdout=io.StringIO())
    registry.refresh_from_db()
    with override_settings(ENCRYPTION_KEYS=[new]):
        assert registry.get_secret() == "PLANTED-SECRET-s3cr3t-9f8e7d"
    with override_settings(ENCRYPTION_KEYS=[old]), pytest.raises(crypto.SecretUnreadable):
        registry.get_secret()


def test_rotation_with_a_key_that_cannot_read_the_secrets_changes_nothing(registry):
    before = registry.secret_encrypted
    with (
        override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(CommandError, match="Nothing was changed"),
    ):
        call_command("rotate_encryption_key", stdout=io.StringIO())
    registry.refresh_from_db()
    assert registry.secret_encrypted == before
