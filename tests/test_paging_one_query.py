"""Lists read a page and its total in one query, and page exactly as Django's paginator pages."""

from datetime import date

import pytest
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patients import models as m
from pmlm_site.paging import OneQueryPaginator


@pytest.fixture
def seven_patients(organisation):
    for n in range(7):
        m.Patient.objects.create(organisation=organisation, external_id=f"p-{n}", family_name=f"F{n}", given_names="G")
    return m.Patient.objects.filter(organisation=organisation).order_by("external_id")


def _same(ours, django):
    assert [p.pk for p in ours.object_list] == [p.pk for p in django.object_list]
    assert (ours.number, ours.paginator.count, ours.paginator.num_pages) == (
        django.number,
        django.paginator.count,
        django.paginator.num_pages,
    )
    assert (ours.has_next(), ours.has_previous(), ours.start_index(), ours.end_index()) == (
        django.has_next(),
        django.has_previous(),
        django.start_index(),
        django.end_index(),
    )


@pytest.mark.django_db
def test_a_page_with_rows_and_its_total_take_one_query(seven_patients):
    with CaptureQueriesContext(connection) as queries:
        page = OneQueryPaginator(seven_patients, 3).page(2)
        assert page.paginator.count == 7 and page.paginator.num_pages == 3
        assert [p.external_id for p in page] == ["p-3", "p-4", "p-5"]
    assert len(queries) == 1
    assert "COUNT(*) OVER ()" in queries[0]["sql"]


@pytest.mark.django_db
def test_a_page_of_her_list_rows_takes_one_query_and_reads_as_her_record_does(seven_patients):
    from patients.selectors import ROW_FIELDS, patient_rows

    with CaptureQueriesContext(connection) as queries:
        page = OneQueryPaginator(patient_rows(seven_patients), 3).page(3)
        assert page.paginator.count == 7
        rows = list(page)
    assert len(queries) == 1
    whole = m.Patient.objects.get(external_id="p-6")
    assert len(rows) == 1 and all(getattr(rows[0], name) == getattr(whole, name) for name in ROW_FIELDS)
    _same(page, Paginator(seven_patients, 3).page(3))


@pytest.mark.django_db
@pytest.mark.parametrize("number", [1, 2, 3, "3", 2.0])
def test_every_page_is_the_page_djangos_paginator_gives(seven_patients, number):
    _same(OneQueryPaginator(seven_patients, 3).page(number), Paginator(seven_patients, 3).page(number))


@pytest.mark.django_db
@pytest.mark.parametrize("number", [None, "x", "", 2.5, 0, -1, 4, 99, "last"])
def test_a_bad_page_number_gives_what_djangos_get_page_gives(seven_patients, number):
    _same(OneQueryPaginator(seven_patients, 3).get_page(number), Paginator(seven_patients, 3).get_page(number))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("number", "error"),
    [
        ("x", PageNotAnInteger),
        (2.5, PageNotAnInteger),
        (0, EmptyPage),
        (4, EmptyPage),
        (648839922932587392, EmptyPage),  # an offset no database takes: counted first, then refused
    ],
)
def test_a_page_out_of_range_or_not_a_number_is_refused_as_django_refuses_it(seven_patients, number, error):
    with pytest.raises(error):
        OneQueryPaginator(seven_patients, 3).page(number)


@pytest.mark.django_db
def test_a_distinct_or_combined_list_is_counted_as_django_counts_it(seven_patients):
    each_seven_times = seven_patients.filter(organisation__patients__isnull=False)  # a join that repeats every row
    distinct = each_seven_times.distinct()
    assert OneQueryPaginator(distinct, 3).page(1).paginator.count == Paginator(distinct, 3).count == 7
    union = seven_patients.order_by().union(seven_patients.order_by()).order_by("external_id")
    assert OneQueryPaginator(union, 3).page(3).paginator.count == 7


@pytest.mark.django_db
def test_an_empty_list_has_one_empty_page(organisation):
    page = OneQueryPaginator(m.Patient.objects.filter(organisation=organisation).order_by("pk"), 3).get_page(None)
    assert list(page) == [] and page.paginator.count == 0 and page.number == 1


@pytest.mark.django_db
def test_the_patient_list_page_counts_and_lists_her_organisations_patients_in_one_query(
    client, clinician, organisation, seven_patients
):
    client.force_login(clinician)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/patients/")
    assert response.status_code == 200
    assert b"7 patients" in response.content
    patient_reads = [q["sql"] for q in queries if 'FROM "patients_patient"' in q["sql"]]
    assert len(patient_reads) == 1 and "COUNT(*) OVER ()" in patient_reads[0]


@pytest.mark.django_db
def test_the_partner_api_pages_her_organisations_patients_with_the_total_in_one_query(
    client, partner_token, seven_patients, other_organisation
):
    m.Patient.objects.create(organisation=other_organisation, external_id="theirs", family_name="Else", given_names="S")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {partner_token}"}
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/api/v1/patients/?page_size=3&page=3", **auth).json()
    assert body["count"] == 7 and body["previous"] and body["next"] is None
    assert [p["id"] for p in body["results"]] == ["p-6"]
    assert len([q for q in queries if 'FROM "patients_patient"' in q["sql"]]) == 1
    assert client.get("/api/v1/patients/?page_size=3&page=4", **auth).status_code == 404


# --- SQL kept per process for a keyed list --------------------------------------------------------------------------


def _list_page(organisation, number, *, kept: bool, built: list | None = None):
    from patients.selectors import patient_list, patient_rows
    from pmlm_site.paging import KeptRows

    def rows():
        (built if built is not None else []).append(1)
        return patient_rows(patient_list(organisation=organisation, on=date(2026, 3, 1), pregnant_first=True))

    listed = KeptRows(("test list", organisation.pk, date(2026, 3, 1)), rows) if kept else rows()
    return OneQueryPaginator(listed, 3).page(number)


@pytest.mark.django_db
def test_a_kept_list_reads_the_rows_and_total_a_compiled_list_reads_and_compiles_once_on_postgresql(
    seven_patients, organisation, monkeypatch
):
    from django.db.models.sql.compiler import SQLCompiler

    from pmlm_site import paging

    paging._kept.clear()
    compiled = []
    real_as_sql = SQLCompiler.as_sql
    monkeypatch.setattr(
        SQLCompiler, "as_sql", lambda self, *a, **k: (compiled.append(1), real_as_sql(self, *a, **k))[1]
    )
    for number in (1, 2, 3, 1, 2, 3):
        kept, plain = _list_page(organisation, number, kept=True), _list_page(organisation, number, kept=False)
        assert list(kept) == list(plain) and kept.paginator.count == plain.paginator.count == 7
    compiled.clear()
    built = []
    _list_page(organisation, 2, kept=True, built=built)
    # PostgreSQL: the kept SQL is run as it is, its queryset not even built. SQLite converts dates after reading:
    # built and compiled each time.
    assert len(compiled) == len(built) == (0 if connection.vendor == "postgresql" else 1)


@pytest.mark.django_db
def test_another_organisations_list_never_runs_the_sql_kept_for_hers(seven_patients, organisation, other_organisation):
    from pmlm_site import paging

    paging._kept.clear()
    m.Patient.objects.create(organisation=other_organisation, external_id="q-1", family_name="Other", given_names="G")
    assert [row.external_id for row in _list_page(organisation, 1, kept=True)] == ["p-0", "p-1", "p-2"]
    assert [row.external_id for row in _list_page(other_organisation, 1, kept=True)] == ["q-1"]
    assert [row.external_id for row in _list_page(organisation, 3, kept=True)] == ["p-6"]


@pytest.mark.django_db
def test_a_kept_lists_page_past_the_end_or_not_a_number_is_refused_as_django_refuses_it(seven_patients, organisation):
    from patients.selectors import patient_rows
    from pmlm_site.paging import KeptRows

    def kept():
        return KeptRows(("seven", organisation.pk), lambda: patient_rows(seven_patients))

    for number in (4, 0, "two", 1.5):
        with pytest.raises(type(_refusal(Paginator(seven_patients, 3), number))):
            OneQueryPaginator(kept(), 3).page(number)
    assert OneQueryPaginator(kept(), 3).get_page(9).number == 3  # the last page, as Django's get_page gives
    assert OneQueryPaginator(kept(), 3).get_page("two").number == 1


def _refusal(paginator, number) -> Exception:
    try:
        paginator.page(number)
    except Exception as refused:
        return refused
    raise AssertionError(f"Django's paginator took page {number!r}")
