"""A read's audit entry is committed while its page renders, and is on disk before the page leaves.

On PostgreSQL, outside a transaction, the entry's INSERT is sent before the page is rendered and its commit is
collected after (audit.in_flight): the disk flush overlaps the rendering. The entry is the same, written once,
committed on its own; a block that would read more from the database is refused; a block that fails leaves the
entry written and the connection usable. Inside a transaction (and on SQLite) the entry is written before the
block, and a rollback takes it back, as audit_record does.
"""

import threading

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditAction, AuditEvent, AuditInbox
from audit.services import audit_recorded_while
from patients.models import Patient

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the INSERT is sent ahead only on PostgreSQL (CI runs it)"
)


def entries_seen_by_another_connection() -> int:
    """What a second session sees: only committed entries."""
    seen = []

    def count():
        from django.db import connection as own

        try:
            seen.append(AuditInbox.objects.count() + AuditEvent.objects.count())
        finally:
            own.close()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return seen[0]


def latest_entry():
    return AuditEvent.objects.order_by("-id").first() or AuditInbox.objects.order_by("-id").first()


def list_read(clinician, organisation, **details):
    return audit_recorded_while(
        AuditAction.VIEW_PATIENT_LIST,
        actor=clinician,
        organisation_id=organisation.pk,
        details={"shown": 2, "patients": [1, 2], **details},
    )


@on_postgresql
def test_the_page_renders_while_the_entry_is_being_committed_and_the_entry_is_on_disk_when_it_ends(
    clinician, organisation
):
    before = entries_seen_by_another_connection()
    with list_read(clinician, organisation):
        in_flight = connection.connection.pgconn.transaction_status
    from psycopg import pq

    assert in_flight == pq.TransactionStatus.ACTIVE  # the INSERT was on its way while the block ran
    assert entries_seen_by_another_connection() == before + 1  # committed, not merely sent
    entry = latest_entry()
    assert (entry.action, entry.actor_name, entry.organisation_id, entry.surface) == (
        AuditAction.VIEW_PATIENT_LIST,
        clinician.username,
        organisation.pk,
        "system",
    )
    assert entry.details == {"shown": 2, "patients": [1, 2]}


@on_postgresql
def test_a_block_that_reads_the_database_is_refused_and_the_entry_is_still_written(clinician, organisation):
    before = entries_seen_by_another_connection()
    with pytest.raises(RuntimeError, match="read everything the block needs before it"):
        with list_read(clinician, organisation):
            Patient.objects.count()
    assert entries_seen_by_another_connection() == before + 1
    assert Patient.objects.count() == 0  # the connection is usable again


@on_postgresql
def test_a_block_that_fails_leaves_its_entry_written_once_and_the_connection_usable(clinician, organisation):
    before = entries_seen_by_another_connection()
    with pytest.raises(ZeroDivisionError):
        with list_read(clinician, organisation):
            1 / 0  # noqa: B018
    assert entries_seen_by_another_connection() == before + 1
    with list_read(clinician, organisation, page=2):
        pass
    assert entries_seen_by_another_connection() == before + 2
    assert latest_entry().details["page"] == 2


@on_postgresql
def test_an_entry_the_database_refuses_is_an_error_before_anything_leaves(clinician, organisation):
    rendered = []
    with pytest.raises(DatabaseError, match="The audit entry was not written"):
        unknown_organisation = organisation.pk + 999
        with audit_recorded_while(AuditAction.VIEW_PATIENT_LIST, actor=clinician, organisation_id=unknown_organisation):
            rendered.append("page")  # rendered, but the caller never gets to send it
    assert rendered == ["page"]
    assert Patient.objects.count() == 0


def test_inside_a_transaction_the_entry_is_written_before_the_block_and_rolled_back_with_it(clinician, organisation):
    before = AuditInbox.objects.count() + AuditEvent.objects.count()
    with pytest.raises(RuntimeError, match="the import failed"), transaction.atomic():
        with list_read(clinician, organisation):
            assert AuditInbox.objects.count() + AuditEvent.objects.count() == before + 1  # reading is allowed here
        raise RuntimeError("the import failed")
    assert AuditInbox.objects.count() + AuditEvent.objects.count() == before


def entries_after(mark: int) -> list:
    """The entries written since `mark` (tests link each entry into the chain as it is written)."""
    return list(AuditEvent.objects.filter(id__gt=mark).order_by("id"))


@on_postgresql
def test_the_patient_list_and_her_record_page_record_what_they_showed_once_committed_before_they_are_sent(
    client_for, clinician, organisation, other_organisation
):
    from tests.factories import PatientFactory

    hers = [PatientFactory(organisation=organisation, family_name=f"Ade{n}") for n in range(3)]
    PatientFactory(organisation=other_organisation, family_name="Elsewhere")
    client = client_for(clinician)
    client.get("/patients/")  # the account is read and kept
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    seen = entries_seen_by_another_connection()
    listed = client.get("/patients/")
    opened = client.get(f"/patients/{hers[0].pk}/")
    assert listed.status_code == 200 and b"Ade0" in listed.content and b"Elsewhere" not in listed.content
    assert opened.status_code == 200 and b"Ade0" in opened.content
    assert entries_seen_by_another_connection() == seen + 2
    listing, reading = entries_after(mark)
    assert listing.action == AuditAction.VIEW_PATIENT_LIST and listing.organisation_id == organisation.pk
    assert sorted(listing.details["patients"]) == sorted(p.pk for p in hers)
    assert (reading.action, reading.object_id, reading.organisation_id) == (
        AuditAction.VIEW_PATIENT,
        str(hers[0].pk),
        organisation.pk,
    )


@on_postgresql
def test_the_partner_api_records_each_read_once_committed_before_it_is_sent(partner_token, organisation):
    from django.test import Client

    from tests.factories import PatientFactory

    hers = [PatientFactory(organisation=organisation) for _ in range(2)]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {partner_token}")
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    seen = entries_seen_by_another_connection()
    listed = api.get("/api/v1/patients/")
    one = api.get(f"/api/v1/patients/{hers[0].external_id}/")
    assert listed.status_code == 200 and listed.json()["count"] == 2
    assert one.status_code == 200 and one.json()["id"] == hers[0].external_id
    assert entries_seen_by_another_connection() == seen + 2
    listing, reading = entries_after(mark)
    assert listing.details == {"view": "PatientList", "count": 2, "patients": [p.pk for p in hers]}
    assert (reading.details, reading.object_id) == ({"view": "PatientDetail", "count": None}, str(hers[0].pk))
