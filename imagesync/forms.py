"""Forms of the console: the Synchronize Images panel and a registry connection."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms

from imagesync.models import Registry, Repository, RepositoryType, SyncTask


class SyncForm(forms.Form):
    """The Synchronize Images panel: one of three synchronization types and its choice."""

    sync_type = forms.ChoiceField(
        label="Synchronization type",
        choices=SyncTask.Scope.choices,
        initial=SyncTask.Scope.ALL,
        widget=forms.RadioSelect,
    )
    types = forms.MultipleChoiceField(
        label="Repository types",
        choices=[c for c in RepositoryType.choices],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    repositories = forms.ModelMultipleChoiceField(
        label="Image repositories",
        queryset=Repository.objects.none(),
        required=False,
        widget=forms.MultipleHiddenInput,
        error_messages={
            "invalid_choice": "One of the selected repositories no longer exists; select again.",
            "invalid_pk_value": "Select repositories from the list.",
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
            self.add_error("types", "Select at least one repository type to synchronize.")
        if sync_type == SyncTask.Scope.REPOSITORIES and not data.get("repositories"):
            if "repositories" not in self.errors:
                self.add_error(
                    "repositories", "Select at least one image repository to synchronize."
                )
        return data


OPTION_HELP = (
    'JSON object of kind-specific options, e.g. {"region": "cn-north-4", "project_id": "..."} for '
    'SWR, {"repositories": ["team/api"]} for a registry without a catalog, '
    '{"max_concurrency": 4, "requests_per_second": 10} to be gentle with the registry.'
)


class RegistryForm(forms.ModelForm):
    """Connect or edit a registry. The secret is write-only: it is never rendered back, and a
    blank field keeps the stored one."""

    secret = forms.CharField(
        label="Password, token or secret key",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored secret.",
    )
    endpoint = forms.URLField(
        label="Endpoint URL",
        max_length=512,
        assume_scheme="https",
        help_text="Base URL, e.g. https://harbor.example.com or https://swr-api.cn-north-4.myhuaweicloud.com.",
    )
    clear_secret = forms.BooleanField(label="Remove the stored secret", required=False)
    options = forms.JSONField(
        label="Options (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=OPTION_HELP,
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
            "verify_tls",
            "ca_bundle",
            "allow_insecure_http",
            "options",
        ]
        labels = {
            "endpoint": "Endpoint URL",
            "verify_tls": "Verify TLS certificate",
            "ca_bundle": "CA certificates (PEM)",
            "allow_insecure_http": "Allow insecure HTTP",
        }
        widgets = {"ca_bundle": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})}

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project
        if not self.instance.pk or not self.instance.has_secret:
            del self.fields["clear_secret"]
        if self.instance.has_secret:
            self.fields["secret"].help_text = "A secret is stored. Leave blank to keep it."
        if not self.instance.pk and not self.is_bound:
            self.initial.setdefault("options", {})

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        duplicate = Registry.objects.filter(project=self.project, name=name).exclude(
            pk=self.instance.pk
        )
        if duplicate.exists():
            raise forms.ValidationError("This project already has a registry with this name.")
        return name

    def clean_options(self) -> dict:
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise forms.ValidationError(
                'Options must be a JSON object, e.g. {"region": "cn-north-4"}.'
            )
        errors = []
        for key in ("max_concurrency",):
            if key in options and not (
                isinstance(options[key], int)
                and not isinstance(options[key], bool)
                and 1 <= options[key] <= 64
            ):
                errors.append(f"{key} must be a whole number from 1 to 64.")
        rps = options.get("requests_per_second")
        if rps is not None and not (
            isinstance(rps, int | float) and not isinstance(rps, bool) and rps > 0
        ):
            errors.append("requests_per_second must be a positive number.")
        repos = options.get("repositories")
        if repos is not None and not (
            isinstance(repos, list) and all(isinstance(r, str) and r.strip() for r in repos)
        ):
            errors.append('repositories must be a list of repository paths, e.g. ["team/api"].')
        for key in ("region", "project_id"):
            if key in options and not isinstance(options[key], str):
                errors.append(f"{key} must be a string.")
        if errors:
            raise forms.ValidationError(errors)
        return options

    def clean(self) -> dict:
        data = super().clean()
        endpoint = data.get("endpoint") or ""
        if urlsplit(endpoint).scheme == "http" and not data.get("allow_insecure_http"):
            self.add_error(
                "endpoint",
                "This endpoint uses plain http://. Use https://, or tick “Allow insecure HTTP” "
                "for a registry on a trusted network.",
            )
        return data

    def save(self, commit: bool = True) -> Registry:
        registry = super().save(commit=False)
        if self.project is not None:
            registry.project = self.project
        if self.cleaned_data.get("clear_secret"):
            registry.secret_encrypted = ""
        elif self.cleaned_data.get("secret"):
            registry.set_secret(self.cleaned_data["secret"])
        if commit:
            registry.save()
        return registry
