from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from imagesync import preferences

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="imagesync:image-list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/setlang/", preferences.set_language, name="set_language"),
    path("preferences/time-zone/", preferences.set_time_zone, name="set-time-zone"),
    path("admin/", admin.site.urls),
    path("api/", include("imagesync.api.urls")),
    path("", include("imagesync.urls")),
]
