from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "patients"
    verbose_name = "Clinical record"

    def ready(self):
        from patients import signals

        signals.connect()
