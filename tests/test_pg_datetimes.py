"""On PostgreSQL every `timestamptz` is parsed by psycopg's compiled loader and reads as Django's own loader reads
it: the same instant, the connection's time zone object, naive when time zones are off."""

import datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg.postgres import types

from patients.models import Patient
from pmlm_site.pg_datetimes import compiled_tz_loader

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's timestamptz")
TIMESTAMPTZ = types["timestamptz"].oid
TEXTS = [
    b"2026-12-01 23:59:59.999999+00",
    b"2026-03-29 01:30:00+01",  # an offset, read as the same instant in UTC
    b"2026-06-01 10:00:00.123-09:30",
    b"0099-01-01 00:00:00+00",
    b"1900-02-28 12:00:00+00",
]


class DjangosLoader(BaseTzLoader):
    timezone = datetime.timezone.utc


@pytest.mark.django_db
def test_the_connection_reads_timestamptz_with_the_compiled_loader_and_the_connections_time_zone():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ, 0)
    assert loader.__name__ == "CompiledTzLoader"
    assert loader.timezone == connection.timezone  # so Django registers no loader of its own on each cursor
    with connection.cursor() as cursor:
        assert cursor.connection.adapters.get_loader(TIMESTAMPTZ, 0) is loader


@pytest.mark.parametrize("text", TEXTS)
def test_each_value_is_the_datetime_djangos_loader_gives(text):
    ours = compiled_tz_loader(datetime.timezone.utc)(TIMESTAMPTZ).load(text)
    django = DjangosLoader(TIMESTAMPTZ).load(text)
    assert ours == django and ours.tzinfo is django.tzinfo is datetime.timezone.utc
    assert ours.isoformat() == django.isoformat()


def test_with_time_zones_off_values_are_naive_as_djangos_are():
    class NaiveDjango(BaseTzLoader):
        timezone = None

    for text in TEXTS:
        ours = compiled_tz_loader(None)(TIMESTAMPTZ).load(text)
        assert ours.tzinfo is None and ours == NaiveDjango(TIMESTAMPTZ).load(text)


@pytest.mark.django_db
def test_a_patient_reads_back_the_instant_she_was_saved_with(organisation):
    at = datetime.datetime(2026, 11, 30, 22, 15, 7, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=3)))
    patient = Patient.objects.create(organisation=organisation, external_id="tz-1", last_encounter_at=at)
    read = Patient.objects.get(pk=patient.pk).last_encounter_at
    assert read == at and read.tzinfo is datetime.timezone.utc
