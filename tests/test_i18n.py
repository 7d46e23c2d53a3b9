"""The console in English and Simplified Chinese: the catalog is complete and compiled, every
template string is marked for translation, the language follows the browser, the top bar and
the user, the time zone follows the user, and codes, parameters and commands stay the same."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import translation

from imagesync import reasons
from imagesync.models import Registry, Repository, UserPreference
from tests.support import i18n_check
from tests.support.factories import PASSWORD, make_image, make_repository
from tests.support.po import read_po

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


# --- the catalog (the CI check) -------------------------------------------------------------


def test_every_template_string_is_marked_for_translation():
    assert i18n_check.unmarked_template_text() == {}


def test_the_template_check_finds_unmarked_text_attributes_and_english_filters(tmp_path):
    (tmp_path / "page.html").write_text(
        '{% load i18n %}<h1>{% translate "Image View" %}</h1>\n'
        '<p title="Copy digest">{{ count }} image{{ count|pluralize }}</p>\n'
        '{% blocktranslate %}Fine {{ x }}{% endblocktranslate %} SWR · Harbor {{ when|default:"never" }}\n'
        "{% comment %}Not shown{% endcomment %}<script>var text = 'not checked';</script>"
    )
    found = i18n_check.unmarked_template_text(tmp_path)
    assert found == {
        "page.html": [
            "{{ count|pluralize }}",
            '{{ when|default:"never" }}',
            "Copy",
            "digest",
            "image",
        ]
    }


def test_the_committed_catalog_is_complete_translated_and_compiled():
    """Fails when makemessages would add an entry, an entry is untranslated or fuzzy, or the
    .mo does not hold exactly the .po's translations (run makemessages in a temporary copy)."""
    assert i18n_check.catalog_problems("zh_Hans") == []


def test_the_catalog_check_reports_fuzzy_untranslated_and_stale_entries(tmp_path, monkeypatch):
    directory = tmp_path / "zh_Hans" / "LC_MESSAGES"
    directory.mkdir(parents=True)
    committed = i18n_check.LOCALE / "zh_Hans" / "LC_MESSAGES"
    po = (committed / "django.po").read_text(encoding="utf-8")
    po = po.replace(
        'msgid "Image View"\nmsgstr "镜像视图"', '#, fuzzy\nmsgid "Image View"\nmsgstr "镜像视图"'
    )
    po = po.replace('msgid "Manage Task"\nmsgstr "任务管理"', 'msgid "Manage Task"\nmsgstr ""')
    (directory / "django.po").write_text(po, encoding="utf-8")
    (directory / "django.mo").write_bytes((committed / "django.mo").read_bytes())
    monkeypatch.setattr(i18n_check, "LOCALE", tmp_path)
    monkeypatch.setattr(i18n_check, "ROOT", tmp_path)
    problems = i18n_check.catalog_problems("zh_Hans", with_makemessages=False)
    assert "fuzzy: 'Image View'" in problems
    assert "untranslated: 'Manage Task'" in problems
    assert any("is stale" in problem for problem in problems)


def test_the_chinese_catalog_uses_the_original_console_terms():
    catalog = {
        entry.msgid: entry.msgstr[0]
        for entry in read_po(i18n_check.LOCALE / "zh_Hans" / "LC_MESSAGES" / "django.po")
    }
    assert catalog["Container Images"] == "容器镜像"
    assert catalog["Synchronize Images"] == "同步镜像"
    assert catalog["Manage Task"] == "任务管理"
    assert catalog["Image Synchronization"] == "镜像同步"
    assert catalog["SWR private image"] == "SWR私有镜像"
    assert catalog["SWR shared image"] == "SWR共享镜像"
    assert catalog["SWR enterprise edition image"] == "SWR企业版镜像"


# --- choosing the language ------------------------------------------------------------------


def test_the_sign_in_page_follows_the_browser_language(client, db):
    chinese = client.get("/login/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "<h1>登录</h1>" in chinese.content.decode()
    assert chinese["Content-Language"] == "zh-hans"
    assert '<html lang="zh-hans">' in chinese.content.decode()
    english = client.get("/login/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "<h1>Sign in</h1>" in english.content.decode()


def test_the_sign_in_page_has_the_switch_and_it_works_signed_out(client, db):
    page = client.get("/login/").content.decode()
    assert 'name="language"' in page and 'action="/i18n/setlang/"' in page
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/login/"})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "<h1>登录</h1>" in client.get("/login/").content.decode()


def test_the_top_bar_switch_sets_the_language_and_remembers_it_for_the_user(
    client, admin_user, django_user_model
):
    client.force_login(admin_user)
    assert "Image View" in client.get("/images/").content.decode()
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": "/images/"})
    assert response.status_code == 302 and response["Location"] == "/images/"
    assert UserPreference.objects.get(user=admin_user).language == "zh-hans"
    assert "镜像视图" in client.get("/images/").content.decode()

    # Another browser (no cookie) that asks for English: the user still gets Chinese.
    other = type(client)()
    other.force_login(admin_user)
    page = other.get("/images/", headers={"Accept-Language": "en"}).content.decode()
    assert "镜像视图" in page and "Synchronize Images" not in page


def test_the_language_switch_needs_csrf_and_ignores_unknown_languages(client, admin_user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(reverse("set_language"), {"language": "zh-hans"}).status_code == 403
    client.force_login(admin_user)
    client.post(reverse("set_language"), {"language": "xx-evil", "next": "/images/"})
    assert not UserPreference.objects.filter(user=admin_user).exists()
    assert "Image View" in client.get("/images/").content.decode()


def test_a_bad_next_url_is_not_followed(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("set-time-zone"), {"time_zone": "Asia/Shanghai", "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("imagesync:image-list")


# --- time zone and formatting ---------------------------------------------------------------


@pytest.fixture
def image(project):
    registry = Registry.objects.create(
        project=project, kind="other", name="hub", endpoint="https://hub.example.com"
    )
    repository = make_repository(registry, "team/api")
    return make_image(
        repository,
        "1.0",
        size=123_456_789,
        registry_updated_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
        last_synced_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
    )


def test_times_follow_the_users_time_zone_and_filters_keep_their_parameters(
    client, admin_user, image
):
    client.force_login(admin_user)
    assert "2026-11-30 23:30" in client.get("/images/").content.decode()
    response = client.post(
        reverse("set-time-zone"), {"time_zone": "Asia/Shanghai", "next": "/images/"}
    )
    assert response.status_code == 302
    page = client.get("/images/").content.decode()
    assert "2026-12-01 07:30" in page and "2026-11-30 23:30" not in page
    assert "Asia/Shanghai" in page  # the user menu names it
    chooser = client.get(reverse("set-time-zone"), {"next": "/images/"}).content.decode()
    assert 'value="Asia/Shanghai" selected' in chooser and 'value="/images/"' in chooser
    # Sorting and filtering take the same parameters in either language.
    client.post(reverse("set_language"), {"language": "zh-hans"})
    sorted_page = client.get("/images/", {"sort": "-size", "q": "api"}).content.decode()
    assert "team/api" in sorted_page and "镜像版本" in sorted_page


def test_a_pages_day_filter_uses_the_users_time_zone_and_the_api_the_consoles(
    client, admin_user, project, image
):
    """Updated 2026-11-30 23:30 UTC is 2026-12-01 07:30 in Shanghai."""
    UserPreference.remember(admin_user, time_zone="Asia/Shanghai")
    client.force_login(admin_user)
    page = client.get("/images/", {"updated_from": "2026-12-01"}).content.decode()
    assert "<strong>1</strong> image" in page
    api = client.get(f"/api/v1/projects/{project.pk}/images/", {"updated_after": "2026-12-01"})
    assert api.status_code == 200 and json.loads(api.content)["count"] == 0


def test_an_unknown_time_zone_is_refused_without_a_server_error(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("set-time-zone"), {"time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert not UserPreference.objects.filter(user=admin_user).exists()


def test_the_time_zone_is_applied_only_to_its_user(client, admin_user, operator):
    UserPreference.remember(admin_user, time_zone="Asia/Shanghai")
    client.force_login(operator)
    client.get("/images/")
    from django.utils import timezone

    assert timezone.get_current_timezone() != zoneinfo.ZoneInfo("Asia/Shanghai")


# --- labels, the API and the commands -------------------------------------------------------


def test_reason_labels_and_statuses_are_translated_but_codes_are_not():
    with translation.override("zh-hans"):
        assert reasons.label(reasons.TIMEOUT) == "超时"
        assert reasons.label("no_such_code") == "no_such_code"
    assert reasons.label(reasons.TIMEOUT) == "Timed out"


def test_the_api_translates_messages_and_keeps_its_codes(client, viewer, project):
    client.force_login(viewer)
    url = f"/api/v1/projects/{project.pk}/registries/"
    body = {"name": "x", "kind": "other", "endpoint": "https://r.example.com"}
    english = client.post(url, body, content_type="application/json")
    chinese = client.post(
        url, body, content_type="application/json", headers={"Accept-Language": "zh-CN"}
    )
    assert english.status_code == chinese.status_code == 403
    en, zh = json.loads(english.content)["error"], json.loads(chinese.content)["error"]
    assert en["code"] == zh["code"] == "permission_denied"
    assert en["message"] != zh["message"] and "角色" in zh["message"]


def test_management_commands_stay_in_english_even_after_a_chinese_request(
    client, admin_user, project
):
    """A command shares the thread's language with what ran before it (in tests, or a
    command called from code): a Chinese page must not leave its language behind."""
    UserPreference.remember(admin_user, language="zh-hans")
    client.force_login(admin_user)
    assert "镜像视图" in client.get("/images/").content.decode()
    args = ["registry", "add", "--project", project.name, "--kind", "other", "--name", "plain"]
    with pytest.raises(CommandError) as refused:
        call_command(*args, "--url", "http://registry.example.com", stdout=StringIO())
    assert "This endpoint uses plain http://" in str(refused.value)
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in str(refused.value))


def test_the_admin_uses_djangos_translations_and_ours(client, django_user_model):
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(superuser)
    page = client.get("/admin/", headers={"Accept-Language": "zh-CN"}).content.decode()
    assert "镜像清单控制台 — 管理" in page  # ours
    assert "最近动作" in page or "站点管理" in page  # Django's


# --- every page in Chinese ----------------------------------------------------------------


def test_every_console_page_in_chinese_shows_no_english_ui_word(client, admin_user, project):
    """Every page of tests/support/web.console_urls, as a project admin with a seeded project
    (a registry, images, a partly failed task), in Chinese: only proper names and data are
    left in English (the stored failure messages are data: registries write them)."""
    from imagesync.preferences import time_zone_names
    from tests.support.factories import seed_project
    from tests.support.web import body_of, console_urls

    seeded = seed_project(project, "zzq")
    data = {
        project.name,
        seeded.registry.name,
        *Repository.objects.values_list("path", flat=True),
        *Repository.objects.values_list("name", flat=True),
        *Repository.objects.values_list("namespace", flat=True),
        seeded.image.tag,
        seeded.task.failure_reason,
        *reasons.LABELS,  # reason codes are shown beside their labels
        *seeded.task.results.values_list("reason_message", flat=True),
        "registry.create",
        "SWROperatePolicy",
        admin_user.username,
        *time_zone_names(),
    }
    client.force_login(admin_user)
    client.post(reverse("set_language"), {"language": "zh-hans"})
    pages = {**console_urls(seeded), "set-time-zone": reverse("set-time-zone")}
    for name, url in pages.items():
        response = client.get(url)
        if response.status_code == 405 or response.get("Content-Type", "").startswith("text/csv"):
            continue  # a POST-only action, or an export (its header is column keys)
        assert response.status_code == 200, url
        text = i18n_check.html_visible_text(body_of(response))
        words = i18n_check.page_english_words(text, data)
        assert not words, f"English left on {name} ({url}): {sorted(set(words))}"


def test_a_failed_repositorys_reason_shows_its_label_in_the_users_language(
    client, admin_user, project
):
    """The stored message is the registry's words (data); the reason beside it is the user's
    language: Manage Task's row, the task's page and its repository results."""
    from tests.support.factories import make_partial_task

    registry = Registry.objects.create(
        project=project, name="hub", kind=Registry.Kind.OTHER, endpoint="https://r.example"
    )
    repository = make_repository(registry, "team/api")
    task = make_partial_task(repository, "connect ECONNREFUSED", failure_code="unreachable")
    client.force_login(admin_user)
    client.post(reverse("set_language"), {"language": "zh-hans"})
    for url in (reverse("imagesync:task-list"), reverse("imagesync:task-detail", args=[task.pk])):
        page = client.get(url).content.decode()
        assert '无法访问 <code class="reason-code">unreachable</code>' in page, url
    client.post(reverse("set_language"), {"language": "en"})
    page = client.get(reverse("imagesync:task-detail", args=[task.pk])).content.decode()
    assert 'Unreachable <code class="reason-code">unreachable</code>' in page
    assert "无法访问" not in page
