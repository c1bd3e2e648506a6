from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "patients"
    verbose_name = "Clinical record"

    def ready(self):
        from patients import signals
        from pmlm_site import pg_datetimes

        signals.connect()
        pg_datetimes.connect()  # every datetime a page or the API reads from PostgreSQL
