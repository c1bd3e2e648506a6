from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "Partner API"

    def ready(self):
        from api import checks, signals  # noqa: F401  (registers the system checks and the token cache's signals)
