"""Image View's usage summary and filters in a real browser (Chromium through Playwright)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from imagesync.models import ProjectMembership, Registry
from tests.support.factories import PASSWORD, make_image, make_repository

pytestmark = [pytest.mark.browser]

NOW = timezone.now()


@pytest.fixture
def seeded(transactional_db, django_user_model, project):
    user = django_user_model.objects.create_user(username="una-viewer", password=PASSWORD)
    ProjectMembership.objects.create(user=user, project=project, role="viewer")
    registry = Registry.objects.create(
        project=project, kind="harbor", name="harbor", endpoint="https://harbor.example.com"
    )
    harbor = make_repository(registry, "library/web", "harbor")
    make_image(
        harbor,
        "fresh",
        last_pulled=NOW - timedelta(days=1),
        pull_source="harbor",
        pull_known=True,
        pull_count=12,
    )
    make_image(harbor, "dusty", pull_source="harbor", pull_known=True, pull_count=12)
    make_image(
        harbor, "", tagged=False, digest_seed="orphan", pull_source="harbor", pull_known=True
    )
    other = make_repository(
        Registry.objects.create(
            project=project, kind="other", name="dist", endpoint="https://dist.example.com"
        ),
        "team/api",
    )
    make_image(other, "1.0")
    return user


def visible_tags(page) -> list[str]:
    cells = page.locator("#image-table tbody tr td:nth-child(2)")
    return [text.split()[0] for text in cells.all_inner_texts()]


def test_the_usage_summary_links_to_the_unused_and_untagged_images(ui, seeded):
    page = ui.page
    ui.sign_in("una-viewer", PASSWORD)
    assert sorted(visible_tags(page)) == ["1.0", "dusty", "fresh"]  # tagged only by default
    unknown_row = page.locator("#image-table tbody tr", has_text="1.0")
    expect(unknown_row.locator("td.usage")).to_have_text("unknown")

    page.get_by_text("Usage: unused and untagged images").click()  # loads the summary
    harbor = page.locator("#usage-summary tr[data-type=harbor]")
    expect(harbor.locator("a[data-usage=never]")).to_have_text("1")
    harbor.locator("a[data-usage=never]").click()
    page.wait_for_url("**never**")
    assert visible_tags(page) == ["dusty"]
    expect(page.locator("#image-table tbody tr td.usage").first).to_contain_text("never")

    ui.goto("/images/")
    page.get_by_text("Usage: unused and untagged images").click()
    page.locator("#usage-summary tr[data-type=harbor] a[data-usage=untagged]").click()
    page.wait_for_url("**untagged**")
    expect(page.locator("#image-table tbody tr")).to_have_count(1)
    expect(page.locator("#image-table tbody tr").first).to_contain_text("untagged")


def test_the_usage_filters_of_the_filter_form(ui, seeded):
    page = ui.page
    ui.sign_in("una-viewer", PASSWORD)
    page.locator("details.more-filters summary").click()
    page.get_by_label("Not pulled in the last N days").fill("30")
    page.get_by_label("Not pulled in the last N days").press("Enter")
    page.wait_for_url("**not_pulled_days=30**")
    expect(page.locator("#image-table tbody tr")).to_have_count(1)
    assert visible_tags(page) == ["dusty"]

    ui.goto("/images/")
    page.locator("details.more-filters summary").click()
    page.get_by_label("Pull data", exact=True).select_option("unknown")
    page.get_by_label("Pull data", exact=True).press("Enter")
    page.wait_for_url("**pulled=unknown**")
    assert visible_tags(page) == ["1.0"]
