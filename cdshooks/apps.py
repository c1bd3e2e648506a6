from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cdshooks"
    verbose_name = "Inside the EHR (CDS Hooks and SMART)"
