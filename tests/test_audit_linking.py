"""Batched linking: a read writes its audit entry in one INSERT; entries join the keyed chain in batches, in the
order they were written, and nothing written is ever lost, duplicated or chained onto a rewritten head."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from api.tokens import token_issue
from audit.models import AuditAction, AuditEvent, AuditHead, AuditInbox
from audit.services import _backlog, audit_link, audit_record, audit_verify, audit_waiting


@pytest.fixture
def batches_of_three(settings):
    settings.PMLM_AUDIT_LINK_EVERY = 3
    settings.PMLM_AUDIT_LINK_SECONDS = 3600
    _backlog.linked()
    yield
    _backlog.linked()


def view(clinician, organisation, n: int):
    return audit_record(AuditAction.VIEW_PATIENT, object_id=n, actor=clinician, organisation_id=organisation.pk)


def chained_object_ids() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("object_id", flat=True))


def test_entries_wait_in_the_inbox_until_a_batch_is_due_then_join_the_chain_in_the_order_written(
    batches_of_three, clinician, organisation
):
    view(clinician, organisation, 1)
    view(clinician, organisation, 2)
    assert audit_waiting() == 2 and not AuditEvent.objects.exists()
    third = view(clinician, organisation, 3)
    assert isinstance(third, AuditEvent)  # the entry that made the batch due comes back chained
    assert chained_object_ids() == ["1", "2", "3"] and audit_waiting() == 0
    assert audit_verify() == (3, None)


def test_linking_again_links_nothing_twice(batches_of_three, clinician, organisation):
    view(clinician, organisation, 1)
    assert len(audit_link()) == 1
    assert audit_link() == []
    assert AuditEvent.objects.count() == 1 and audit_waiting() == 0


def test_an_entry_written_in_a_rolled_back_transaction_is_neither_waiting_nor_chained(
    batches_of_three, clinician, organisation
):
    with pytest.raises(RuntimeError), transaction.atomic():
        view(clinician, organisation, 1)
        raise RuntimeError("the write failed")
    audit_link()
    assert audit_waiting() == 0 and not AuditEvent.objects.exists()


def test_an_entry_waits_no_longer_than_the_configured_seconds_once_its_process_writes_again(
    batches_of_three, settings, clinician, organisation
):
    settings.PMLM_AUDIT_LINK_SECONDS = 0
    view(clinician, organisation, 1)
    assert audit_waiting() == 0 and AuditEvent.objects.count() == 1


def test_verifying_exporting_and_the_admin_list_link_what_is_waiting_first(
    batches_of_three, clinician, organisation, admin_client, capsys
):
    _backlog.linked()  # signing the admin in wrote an entry of its own
    view(clinician, organisation, 1)
    assert audit_verify() == (AuditEvent.objects.count(), None) and audit_waiting() == 0
    view(clinician, organisation, 2)
    call_command("export_audit")
    assert '"code": "view_patient"' in capsys.readouterr().out and audit_waiting() == 0
    view(clinician, organisation, 3)
    assert admin_client.get("/admin/audit/auditevent/").status_code == 200
    assert chained_object_ids()[-3:] == ["1", "2", "3"]


def test_beat_links_the_entries_no_request_linked(batches_of_three, settings, clinician, organisation):
    from audit.tasks import link_audit_task
    from pmlm_site.lanes import INTERACTIVE, TASK_LANES

    view(clinician, organisation, 1)
    schedule = settings.CELERY_BEAT_SCHEDULE["link-audit-entries"]
    assert schedule["task"] == "audit.tasks.link_audit_task" and schedule["schedule"] <= 10
    assert TASK_LANES["audit.tasks.link_audit_task"] == INTERACTIVE  # never behind a refinement run
    assert link_audit_task() == 1 and audit_waiting() == 0


def test_a_purge_chains_what_was_waiting_and_its_own_entry(batches_of_three, clinician, organisation):
    view(clinician, organisation, 1)
    call_command("purge_audit", days=3650)
    assert audit_waiting() == 0
    assert AuditEvent.objects.count() == 1  # nothing was old enough, so nothing purged and no purge entry
    assert audit_verify() == (1, None)


def test_entries_are_not_chained_onto_a_head_whose_seal_was_rewritten(batches_of_three, clinician, organisation):
    view(clinician, organisation, 1)
    audit_link()
    AuditHead.objects.filter(pk=1).update(last_hash="0" * 64)  # someone points the head elsewhere
    view(clinician, organisation, 2)
    assert audit_link() == [] and audit_waiting() == 1  # kept, not sealed onto the forgery
    with pytest.raises(CommandError, match="1 newer entries wait in the inbox"):
        call_command("verify_audit")


def test_entries_are_not_chained_onto_a_new_head_when_the_head_was_deleted(batches_of_three, clinician, organisation):
    view(clinician, organisation, 1)
    audit_link()
    AuditHead.objects.all().delete()
    view(clinician, organisation, 2)
    assert audit_link() == [] and audit_waiting() == 1
    assert "head is missing" in audit_verify()[1].reason


def test_an_api_read_writes_its_entry_in_one_statement_and_takes_no_lock(
    batches_of_three, client, partner, imported_patient
):
    token = token_issue(username=partner.username)[1]
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/patients/pat-1/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    audit_statements = [q["sql"] for q in queries.captured_queries if "audit_" in q["sql"]]
    assert len(audit_statements) == 1 and audit_statements[0].startswith("INSERT INTO")
    assert AuditInbox.objects.last().action == AuditAction.API_READ
