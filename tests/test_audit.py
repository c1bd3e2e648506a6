"""The audit trail: every surface records who saw or changed what; the chain exposes any edit."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from api.tokens import token_issue
from audit.models import AuditAction, AuditEvent
from audit.services import audit_record, audit_verify
from patients import models as pm
from tests.conftest import PASSWORD, make_member


def actions_of(user) -> set[str]:
    return set(AuditEvent.objects.filter(actor=user).values_list("action", flat=True))


def test_pages_the_api_and_the_admin_record_who_read_and_wrote_what(
    client_for, client, clinician, curator, partner, imported_patient, tiny_policy
):
    page = client_for(clinician)
    page.get("/patients/")
    page.get(f"/patients/{imported_patient.pk}/")
    page.post(f"/patients/{imported_patient.pk}/guidance/", {"question": "Plan?", "at": "2025-05-02"})
    assert {"view_patient_list", "view_patient", "request_guidance"} <= actions_of(clinician)

    token = token_issue(username=partner.username)[1]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    client.logout()
    client.get("/api/v1/patients/pat-1/", **headers)
    client.get("/api/v1/patients/pat-1/bundle/", **headers)
    client.post("/api/v1/patients/pat-1/prompt/", {"question": "Plan?"}, content_type="application/json", **headers)
    assert {"api_read", "export_bundle", "build_prompt"} <= actions_of(partner)

    from patients.demo.seed import curator_group_ensure

    curator.groups.add(curator_group_ensure())
    admin = client_for(curator)
    observation = pm.Observation.objects.filter(patient=imported_patient).first()
    admin.get(f"/admin/patients/observation/{observation.pk}/change/")
    admin.post("/admin/patients/observation/", {"action": "export_csv", "_selected_action": [observation.pk]})
    assert {"admin_view", "export_csv"} <= actions_of(curator)

    events = list(AuditEvent.objects.all())
    assert all(e.organisation_id == imported_patient.organisation_id for e in events if e.actor_id)
    assert all(e.request_id for e in events if e.surface in ("page", "api", "admin"))
    # No name, MRN or question text inside the chained content.
    chained = json.dumps([[e.object_id, e.details, e.object_type] for e in events])
    for identifying in ("Rivera", "Ana", "pat-1", "Plan?"):
        assert identifying not in chained


def test_a_request_id_from_the_caller_is_kept_and_returned(client_for, clinician, imported_patient):
    response = client_for(clinician).get(f"/patients/{imported_patient.pk}/", HTTP_X_REQUEST_ID="trace-0042-abcd")
    assert response["X-Request-ID"] == "trace-0042-abcd"
    assert AuditEvent.objects.get(action="view_patient").request_id == "trace-0042-abcd"
    odd = client_for(clinician).get(f"/patients/{imported_patient.pk}/", HTTP_X_REQUEST_ID="<script>")
    assert odd["X-Request-ID"] != "<script>"
    assert len(odd["X-Request-ID"]) == 32


def test_sign_in_and_failed_sign_in_are_recorded(client, clinician):
    client.post("/accounts/login/", {"username": "dr-north", "password": "wrong"})
    client.post("/accounts/login/", {"username": "dr-north", "password": PASSWORD})
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == ["sign_in_failed", "sign_in"]


class TestTheChain:
    @pytest.fixture
    def trail(self, organisation, clinician):
        return [
            audit_record(
                AuditAction.VIEW_PATIENT,
                object_type="patients.Patient",
                object_id=n,
                actor=clinician,
                organisation_id=organisation.pk,
            )
            for n in range(5)
        ]

    def test_an_intact_trail_verifies(self, trail, capsys):
        call_command("verify_audit")
        assert "5 entries verified" in capsys.readouterr().out

    def test_an_edited_entry_is_named(self, trail):
        AuditEvent.objects.filter(pk=trail[2].pk).update(object_id="999")
        with pytest.raises(CommandError, match=f"entry {trail[2].pk}: its content no longer matches"):
            call_command("verify_audit")

    def test_a_removed_entry_breaks_the_chain_at_the_next_one(self, trail):
        AuditEvent.objects.filter(pk=trail[1].pk).delete()
        with pytest.raises(CommandError, match=f"entry {trail[2].pk}: it does not follow"):
            call_command("verify_audit")

    def test_removing_the_newest_entries_is_noticed(self, trail):
        AuditEvent.objects.filter(pk=trail[-1].pk).delete()
        assert "newest entries are missing" in audit_verify()[1].reason

    def test_a_forged_entry_with_a_recomputed_hash_still_breaks_the_links(self, trail):
        from audit.chain import entry_hash
        from audit.services import _payload, audit_keyring

        forged = AuditEvent.objects.get(pk=trail[2].pk)
        forged.object_id = "999"
        forged.hash = entry_hash(audit_keyring().current, forged.prev_hash, _payload(forged))  # even with the key
        forged.save()
        assert audit_verify()[1].event_id == trail[3].pk

    def test_purging_past_retention_keeps_the_rest_verifiable(self, organisation, clinician, monkeypatch, settings):
        import audit.services

        old = timezone.now() - timedelta(days=settings.PMLM_AUDIT_RETENTION_DAYS + 30)
        monkeypatch.setattr(audit.services.timezone, "now", lambda: old)
        for n in range(3):
            audit_record(AuditAction.VIEW_PATIENT, object_id=n, actor=clinician, organisation_id=organisation.pk)
        monkeypatch.undo()
        kept = [audit_record(AuditAction.VIEW_PATIENT, object_id=n, actor=clinician) for n in range(2)]
        call_command("purge_audit")
        assert AuditEvent.objects.filter(pk__in=[k.pk for k in kept]).count() == 2
        assert AuditEvent.objects.count() == 3
        assert AuditEvent.objects.filter(action="retention_purge").get().details["deleted"] == 3
        assert audit_verify()[1] is None


def test_the_trail_exports_as_fhir_audit_events(organisation, clinician, capsys):
    audit_record(
        AuditAction.VIEW_PATIENT,
        object_type="patients.Patient",
        object_id=7,
        actor=clinician,
        organisation_id=organisation.pk,
    )
    call_command("export_audit", "--org", organisation.slug)
    bundle = json.loads(capsys.readouterr().out)
    event = bundle["entry"][0]["resource"]
    assert bundle["resourceType"] == "Bundle"
    assert event["resourceType"] == "AuditEvent"
    assert event["action"] == "R"
    assert event["agent"][0]["who"]["identifier"]["value"] == "dr-north"
    assert event["entity"][0]["what"]["reference"] == "patients.Patient/7"
    assert {"type", "recorded", "source", "agent"} <= set(event)


def test_only_admins_browse_the_trail_and_nobody_edits_it(client_for, curator, organisation, other_organisation):
    admin_user = make_member("admin-north", organisation, pm.Role.ADMIN, is_staff=True)
    audit_record(AuditAction.VIEW_PATIENT, object_id=1, actor=admin_user, organisation_id=organisation.pk)
    audit_record(AuditAction.VIEW_PATIENT, object_id=2, organisation_id=other_organisation.pk)
    page = client_for(admin_user).get("/admin/audit/auditevent/")
    listed = page.context["cl"].queryset
    assert page.status_code == 200
    assert listed.exists()
    assert set(listed.values_list("organisation", flat=True)) == {organisation.pk}
    event = AuditEvent.objects.filter(organisation=organisation).first()
    assert (
        client_for(admin_user).post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert client_for(curator).get("/admin/audit/auditevent/").status_code == 403
