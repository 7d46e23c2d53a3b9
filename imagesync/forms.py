"""Forms of the console: the Synchronize Images panel and a registry connection."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from django import forms
from django.db import transaction
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from imagesync.models import Registry, Repository, RepositoryType, SyncTask
from imagesync.registries.swr import region_from_endpoint as swr_region_of


class SyncForm(forms.Form):
    """The Synchronize Images panel: one of three synchronization types and its choice."""

    sync_type = forms.ChoiceField(
        label=gettext_lazy("Synchronization type"),
        choices=SyncTask.Scope.choices,
        initial=SyncTask.Scope.ALL,
        widget=forms.RadioSelect,
    )
    types = forms.MultipleChoiceField(
        label=gettext_lazy("Repository types"),
        choices=[c for c in RepositoryType.choices],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    repositories = forms.ModelMultipleChoiceField(
        label=gettext_lazy("Image repositories"),
        queryset=Repository.objects.none(),
        required=False,
        widget=forms.MultipleHiddenInput,
        error_messages={
            "invalid_choice": gettext_lazy(
                "One of the selected repositories no longer exists; select again."
            ),
            "invalid_pk_value": gettext_lazy("Select repositories from the list."),
        },
    )

    def __init__(self, *args, repositories=None, **kwargs):
        super().__init__(*args, **kwargs)
        if repositories is not None:
            self.fields["repositories"].queryset = repositories

    def clean(self) -> dict:
        data = super().clean()
        sync_type = data.get("sync_type")
        if sync_type == SyncTask.Scope.TYPES and not data.get("types"):
            self.add_error("types", _("Select at least one repository type to synchronize."))
        if sync_type == SyncTask.Scope.REPOSITORIES and not data.get("repositories"):
            if "repositories" not in self.errors:
                self.add_error(
                    "repositories", _("Select at least one image repository to synchronize.")
                )
        return data


# --- registry connections -------------------------------------------------------------------
#
# RegistryForm is the one validator and writer of registry connections: the console pages, the
# API, the admin and `manage.py registry` all run it, so the same bad input gets the same
# message everywhere, and every create and update is audited in `save`.

# The regions the SWR API serves (huaweicloudsdkswr's SwrRegion), with Huawei Cloud's names.
SWR_REGIONS = (
    ("af-south-1", gettext_lazy("AF-Johannesburg")),
    ("ap-southeast-1", gettext_lazy("CN-Hong Kong")),
    ("ap-southeast-2", gettext_lazy("AP-Bangkok")),
    ("ap-southeast-3", gettext_lazy("AP-Singapore")),
    ("ap-southeast-5", gettext_lazy("AP-Manila")),
    ("ae-ad-1", gettext_lazy("ME-Abu Dhabi")),
    ("cn-east-2", gettext_lazy("CN East-Shanghai2")),
    ("cn-east-3", gettext_lazy("CN East-Shanghai1")),
    ("cn-north-1", gettext_lazy("CN North-Beijing1")),
    ("cn-north-2", gettext_lazy("CN North-Beijing2")),
    ("cn-north-4", gettext_lazy("CN North-Beijing4")),
    ("cn-north-9", gettext_lazy("CN North-Ulanqab1")),
    ("cn-north-11", gettext_lazy("CN North-Ulanqab2")),
    ("cn-south-1", gettext_lazy("CN South-Guangzhou")),
    ("cn-south-2", gettext_lazy("CN South-Shenzhen")),
    ("cn-southwest-2", gettext_lazy("CN Southwest-Guiyang1")),
    ("eu-west-0", gettext_lazy("EU-Paris")),
    ("eu-west-101", gettext_lazy("EU-Dublin")),
    ("la-north-2", gettext_lazy("LA-Mexico City2")),
    ("la-south-2", gettext_lazy("LA-Santiago")),
    ("me-east-1", gettext_lazy("ME-Riyadh")),
    ("my-kualalumpur-1", gettext_lazy("AP-Kuala Lumpur")),
    ("na-mexico-1", gettext_lazy("LA-Mexico City1")),
    ("ru-moscow-1", gettext_lazy("RU-Moscow")),
    ("ru-northwest-2", gettext_lazy("RU-Moscow2")),
    ("sa-brazil-1", gettext_lazy("LA-Sao Paulo1")),
    ("tr-west-1", gettext_lazy("TR-Istanbul")),
)

# Options that have their own form field, per kind; the field is named after the option key.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    Registry.Kind.SWR: ("region", "project_id"),
    Registry.Kind.HARBOR: ("projects",),
    Registry.Kind.JFROG: ("repo_keys",),
    Registry.Kind.OTHER: ("repositories",),
}
OPTION_FIELDS = tuple(name for names in KIND_FIELDS.values() for name in names)


def _whole(low: int, high: int) -> Callable[[str, object], str | None]:
    def check(key: str, value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"{key} must be a whole number from {low} to {high}."

    return check


def _positive(key: str, value: object) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return None if ok else f"{key} must be a positive number."


def _boolean(key: str, value: object) -> str | None:
    return None if isinstance(value, bool) else f"{key} must be true or false."


def _text(key: str, value: object) -> str | None:
    return None if isinstance(value, str) else f"{key} must be a string."


def _names(key: str, value: object) -> str | None:
    ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    return None if ok else f'{key} must be a list of names, e.g. ["team-a", "team-b"].'


def _jfrog_auth(key: str, value: object) -> str | None:
    modes = ("basic", "token", "apikey", "anonymous")
    return None if value in modes else f"{key} must be one of {', '.join(modes)}."


# Options without a field, as the clients read them (imagesync/registries/): the Transport's,
# which every kind takes, then each client's own.
TRANSPORT_OPTIONS = {
    "max_concurrency": _whole(1, 64),
    "pipeline_depth": _whole(1, 64),
    "requests_per_second": _positive,
    "connect_timeout": _positive,
    "read_timeout": _positive,
    "max_retries": _whole(0, 10),
    "retry_budget": _positive,
    "backoff_base": _positive,
    "backoff_max": _positive,
    "max_body_bytes": _whole(1024, 1024**3),
    "direct_http": _boolean,
}
ADVANCED_OPTIONS: dict[str, dict[str, Callable[[str, object], str | None]]] = {
    Registry.Kind.SWR: {
        "namespaces": _names,
        "enterprise": _boolean,
        "page_size": _whole(1, 1000),
        "registry_host": _text,
    },
    Registry.Kind.HARBOR: {"include_non_images": _boolean},
    Registry.Kind.JFROG: {
        "auth": _jfrog_auth,
        "include_virtual": _boolean,
        "fetch_manifests": _boolean,
    },
    Registry.Kind.OTHER: {
        "catalog_page_size": _whole(1, 10000),
        "tags_page_size": _whole(1, 10000),
        "resolve_new_tags_with_get": _boolean,
    },
}

# Options refused with a reason: options are stored and shown in clear, and these would be
# secrets there.
REFUSED_OPTIONS = {
    "security_token": (
        "A security token belongs to temporary credentials, which expire within a day and "
        "would be stored unencrypted here; give a permanent access key (user name) and secret "
        "key instead."
    ),
}

HARBOR_PROJECT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
JFROG_REPO_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The OCI distribution spec's repository name grammar.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

INSECURE_HTTP = gettext_lazy(
    "This endpoint uses plain http://. Use https://, or allow insecure HTTP for a registry "
    "on a trusted network."
)


class NameListField(forms.Field):
    """A list option typed one item a line (or comma-separated); the API and the command may
    pass a list. Stored as a list of strings, as the clients read it."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def __init__(self, *, pattern: re.Pattern, what: str, example: str, strip: str = "", **kw):
        super().__init__(required=False, **kw)
        self.pattern, self.what, self.example, self.strip_chars = pattern, what, example, strip

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value) -> list[str]:
        if value in self.empty_values:
            return []
        if isinstance(value, str):
            value = re.split(r"[\s,]+", value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError(
                _("Enter %(what)ss as text, one a line, e.g. %(example)s.")
                % {"what": self.what, "example": self.example},
                code="invalid",
            )
        items = [item.strip().strip(self.strip_chars) for item in value]
        items = [item for item in items if item]
        for item in items:
            if len(item) > 255 or not self.pattern.match(item):
                raise forms.ValidationError(
                    _("“%(item)s” is not a %(what)s; enter one a line, e.g. %(example)s.")
                    % {"item": item[:80], "what": self.what, "example": self.example},
                    code="invalid",
                )
        return list(dict.fromkeys(items))

    def has_changed(self, initial, data) -> bool:
        try:
            return self.to_python(initial) != self.to_python(data)
        except forms.ValidationError:
            return True


def option_field(field: forms.Field, kind: str) -> forms.Field:
    """Mark a field as one kind's option: the page's script shows it only for that kind."""
    field.registry_kind = kind
    field.widget.attrs["data-registry-kind"] = kind
    return field


def name_list(kind: str, label: str, pattern, what: str, example: str, help_text: str, strip=""):
    """One kind's list option (Harbor projects, JFrog keys, OCI repositories)."""
    field = NameListField(
        label=label, pattern=pattern, what=what, example=example, strip=strip, help_text=help_text
    )
    return option_field(field, kind)


class RegistryForm(forms.ModelForm):
    """Connect or edit a registry. The secret is write-only: it is never rendered back, and a
    blank field keeps the stored one. Kind-specific options have their own fields; fields of
    another kind than the chosen one are ignored on save."""

    secret = forms.CharField(
        label=gettext_lazy("Password, token or secret key"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Write-only. Leave blank to keep the stored secret."),
    )
    endpoint = forms.URLField(
        label=gettext_lazy("Endpoint URL"),
        max_length=512,
        assume_scheme="https",
        help_text=gettext_lazy(
            "Base URL, e.g. https://harbor.example.com or https://swr-api.cn-north-4.myhuaweicloud.com."
        ),
    )
    clear_secret = forms.BooleanField(
        label=gettext_lazy("Remove the stored secret"), required=False
    )
    region = option_field(
        forms.ChoiceField(
            label=gettext_lazy("SWR region"),
            required=False,
            choices=[
                ("", gettext_lazy("Choose a region")),
                *((r, format_lazy("{} — {}", r, n)) for r, n in SWR_REGIONS),
            ],
            error_messages={
                "invalid_choice": gettext_lazy(
                    "“%(value)s” is not a Huawei Cloud region that SWR serves; "
                    "choose one from the list, e.g. cn-north-4."
                )
            },
        ),
        Registry.Kind.SWR,
    )
    project_id = option_field(
        forms.CharField(
            label=gettext_lazy("SWR project ID"),
            required=False,
            max_length=64,
            help_text=gettext_lazy(
                "The project ID of the region (My Credentials > API Credentials); "
                "every request is signed with it."
            ),
        ),
        Registry.Kind.SWR,
    )
    projects = name_list(
        Registry.Kind.HARBOR, gettext_lazy("Harbor projects"), HARBOR_PROJECT,
        gettext_lazy("Harbor project name"), "library",
        gettext_lazy("Only these projects, one a line. Empty: every project the account sees."),
    )  # fmt: skip
    repo_keys = name_list(
        Registry.Kind.JFROG, gettext_lazy("JFrog repository keys"), JFROG_REPO_KEY,
        gettext_lazy("JFrog repository key"), "docker-local",
        gettext_lazy("Only these Docker repositories, one key a line. Empty: every one."),
    )  # fmt: skip
    repositories = name_list(
        Registry.Kind.OTHER, gettext_lazy("Repositories"), REPOSITORY_PATH,
        gettext_lazy("repository path"), "team/api",
        gettext_lazy("For a registry without a catalog: the repositories to list, one a line. "
                     "Empty: read the catalog."),
        strip="/",
    )  # fmt: skip
    options = forms.JSONField(
        label=gettext_lazy("Advanced options (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=gettext_lazy(
            'Options without a field, e.g. {"max_concurrency": 4, '
            '"requests_per_second": 10} to be gentle with the registry.'
        ),
    )

    class Meta:
        model = Registry
        fields = [
            "name",
            "kind",
            "endpoint",
            "username",
            "secret",
            "clear_secret",
            *OPTION_FIELDS,
            "verify_tls",
            "ca_bundle",
            "allow_insecure_http",
            "options",
        ]
        labels = {
            "name": gettext_lazy("Name"),
            "kind": gettext_lazy("Kind"),
            "username": gettext_lazy("Username"),
            "endpoint": gettext_lazy("Endpoint URL"),
            "verify_tls": gettext_lazy("Verify TLS certificate"),
            "ca_bundle": gettext_lazy("CA certificates (PEM)"),
            "allow_insecure_http": gettext_lazy("Allow insecure HTTP"),
        }
        widgets = {"ca_bundle": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}

    class Media:
        js = ["imagesync/js/registry_form.js"]

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        if not self.instance.pk or not self.instance.has_secret:
            del self.fields["clear_secret"]
        if self.instance.has_secret:
            self.fields["secret"].help_text = "A secret is stored. Leave blank to keep it."
        stored = dict(self.instance.options or {})
        for name in OPTION_FIELDS:
            if name in stored:
                self.initial.setdefault(name, stored[name])
        self.initial["options"] = {
            key: value
            for key, value in stored.items()
            if key not in KIND_FIELDS.get(self.instance.kind, ())
        }

    @staticmethod
    def data_from_options(kind: str, options) -> dict:
        """Form data from one `options` object (the API's and the command's shape): the kind's
        field options to their fields, everything else to the advanced options."""
        if not isinstance(options, dict):
            return {"options": options}
        fields = KIND_FIELDS.get(kind, ())
        data = {key: value for key, value in options.items() if key in fields}
        data["options"] = {key: value for key, value in options.items() if key not in fields}
        return data

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean_options(self) -> dict:
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise forms.ValidationError(
                _('Options must be a JSON object, e.g. {"max_concurrency": 4}.')
            )
        return options

    def clean(self) -> dict:
        data = super().clean()
        endpoint = data.get("endpoint") or ""
        if urlsplit(endpoint).scheme == "http" and not data.get("allow_insecure_http"):
            self.add_error("endpoint", forms.ValidationError(INSECURE_HTTP, code="insecure_http"))
        self._check_unique_name(data)
        kind = data.get("kind")
        if kind in KIND_FIELDS:
            for name in set(OPTION_FIELDS) - set(KIND_FIELDS[kind]):
                self._errors.pop(name, None)  # another kind's field: ignored, so never wrong
            self._check_kind_fields(kind, data)
            advanced = self._check_advanced(kind, data.get("options"))
            if advanced is not None:
                chosen = {name: data.get(name) for name in KIND_FIELDS[kind]}
                data["options"] = {**advanced, **{k: v for k, v in chosen.items() if v}}
        return data

    def _check_unique_name(self, data: dict) -> None:
        project = self.project or data.get("project")
        name = data.get("name")
        if project is None or not name:
            return
        duplicate = Registry.objects.filter(project=project, name=name).exclude(pk=self.instance.pk)
        if duplicate.exists():
            self.add_error("name", _("This project already has a registry with this name."))

    def _check_kind_fields(self, kind: str, data: dict) -> None:
        if kind != Registry.Kind.SWR:
            return
        region = data.get("region")
        if not region and "region" not in self.errors:
            self.add_error("region", _("An SWR connection needs its region, e.g. cn-north-4."))
        in_url = swr_region_of(data.get("endpoint") or "")
        if region and in_url and in_url != region:
            self.add_error(
                "region",
                _("The endpoint is in region %(in_url)s, not %(region)s; choose %(in_url)s.")
                % {"in_url": in_url, "region": region},
            )
        project_id = (data.get("project_id") or "").strip()
        data["project_id"] = project_id
        if "project_id" in self.errors:
            return
        if not project_id:
            self.add_error(
                "project_id",
                _(
                    "An SWR connection needs the project ID of its region "
                    "(My Credentials > API Credentials)."
                ),
            )
        elif not PROJECT_ID.match(project_id):
            self.add_error(
                "project_id",
                _(
                    "The SWR project ID has letters and digits only, as shown under "
                    "My Credentials > API Credentials."
                ),
            )

    def _check_advanced(self, kind: str, options) -> dict | None:
        """Refuse advanced options a field covers, that the kind does not take, or whose value
        the client cannot use; the checked options, or None when refused."""
        if options is None:
            return None
        allowed = {**TRANSPORT_OPTIONS, **ADVANCED_OPTIONS[kind]}
        label = Registry.Kind(kind).label
        errors = []
        for key, value in options.items():
            if key in REFUSED_OPTIONS:
                errors.append(REFUSED_OPTIONS[key])
            elif key in KIND_FIELDS[kind]:
                errors.append(
                    _("“%(key)s” has its own field; set it there, not here.") % {"key": key}
                )
            elif key not in allowed:
                errors.append(
                    _("“%(key)s” is not an option of a %(kind)s registry; it takes %(options)s.")
                    % {"key": str(key)[:60], "kind": label, "options": ", ".join(sorted(allowed))}
                )
            elif problem := allowed[key](key, value):
                errors.append(problem)
        if errors:
            self.add_error("options", errors)
            return None
        return options

    def changes(self) -> str:
        """What an update changed, for the audit log: field names, never the secret."""
        kind = self.cleaned_data.get("kind")
        ignored = {"secret", "clear_secret", *OPTION_FIELDS} - set(KIND_FIELDS.get(kind, ()))
        changed = [name for name in self.changed_data if name not in ignored]
        text = "changed: " + (", ".join(changed) or "nothing")
        if self.cleaned_data.get("clear_secret"):
            text += " (secret removed)"
        elif self.cleaned_data.get("secret"):
            text += " (secret replaced)"
        return text

    def save(self, commit: bool = True, *, actor=None, via: str = "") -> Registry:
        """Save the connection and audit it (registry.create or registry.update with what
        changed). With commit=False nothing is written or audited: the admin saves later."""
        registry = super().save(commit=False)
        if self.project is not None:
            registry.project = self.project
        if self.cleaned_data.get("clear_secret"):
            registry.secret_encrypted = ""
        elif self.cleaned_data.get("secret"):
            registry.set_secret(self.cleaned_data["secret"])
        if commit:
            creating = registry._state.adding
            with transaction.atomic():
                registry.save()
                if creating:
                    registry.audit("registry.create", actor, via=via)
                else:
                    registry.audit("registry.update", actor, via=via, detail=self.changes())
        return registry
