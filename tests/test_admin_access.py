"""Admin isolation, walked URL by URL: a curator (or admin) of South Clinic reaches none of North
Clinic's rows through any registered admin — changelist, change, history, a history version, its
revert, delete, or any action — and every refusal is audited. Shared settings are read-only to
curators; only site administrators change them."""

from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models.fields.files import FieldFile
from django.forms.models import model_to_dict
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from api.models import ApiToken
from api.tokens import token_issue
from audit.models import AuditAction, AuditEvent
from audit.services import audit_record
from cdshooks.models import EHRClient
from patients import models as m
from patients.demo.seed import curator_group_ensure, site_admin_group_ensure
from patients.models import Role
from patients.services import patient_import_bundle, read_bundle_file
from prompting import models as pr
from tests.conftest import make_member

SYNTHEA = sorted((Path(__file__).resolve().parent.parent / "demo_data" / "synthea_obgyn").glob("*.json.gz"))[0]
SHARED = {m.CareItem, pr.PromptTemplate, pr.LLMEndpoint, pr.KnowledgeDocument}


@pytest.fixture
def north_rows(organisation, clinician, curator):
    """One row of every model an admin shows, all North Clinic's (or shared)."""
    result = patient_import_bundle(organisation=organisation, bundle=read_bundle_file(SYNTHEA), source="test")
    assert result.ok, result.error
    patient = organisation.patients.get()
    patient.family_name = "Northfamily"
    patient._history_user = curator
    patient.save()  # a second history version
    encounter = m.Encounter.objects.filter(patient=patient).first()
    item = m.CareItem.objects.create(slug="folic-acid", name="Folic acid", category="intervention")
    prompt, guidance = _prompt_and_guidance(patient)
    peer_model = pr.PeerModel.objects.create(organisation=organisation, version=1, status=m.JobStatus.DONE)
    token, _ = token_issue(username=clinician.username, name="north")
    rows = {
        m.LifestyleRecord: m.LifestyleRecord.objects.create(
            patient=patient, kind="tobacco", recorded_at=timezone.now(), value="never"
        ),
        m.CareItem: item,
        m.MedicationStatement: m.MedicationStatement.objects.create(
            organisation=organisation, patient=patient, fhir_id="ms-1", status="active", display="Ferrous sulfate"
        ),
        m.AllergyIntolerance: m.AllergyIntolerance.objects.create(
            organisation=organisation, patient=patient, fhir_id="al-1", display="Penicillin"
        ),
        m.CareRating: m.CareRating.objects.create(
            patient=patient, care_item=item, rating=4, rated_on=timezone.now().date()
        ),
        m.PhysicianRecommendation: m.PhysicianRecommendation.objects.create(
            patient=patient, encounter=encounter, text="Repeat BP in a week.", written_at=encounter.period_start
        ),
        m.ImportJob: m.ImportJob.objects.create(organisation=organisation, upload="imports/north-clinic/x.json"),
        pr.PersonalizedPrompt: prompt,
        pr.GuidanceRequest: guidance,
        pr.PeerModel: peer_model,
        pr.PeerProfile: pr.PeerProfile.objects.create(peer_model=peer_model, patient=patient, basis="ratings"),
        pr.ComparisonRun: pr.ComparisonRun.objects.create(organisation=organisation),
        pr.RefinementRun: pr.RefinementRun.objects.create(
            organisation=organisation, version=1, status=m.JobStatus.RUNNING
        ),
        pr.ClinicianRating: pr.ClinicianRating.objects.create(
            guidance=guidance, rater=clinician, accuracy=3, completeness=3, personalisation=3, safety=3, clarity=3
        ),
        pr.EvaluationRun: pr.EvaluationRun.objects.create(organisation=organisation, status=m.JobStatus.RUNNING),
        pr.KnowledgeDocument: pr.KnowledgeDocument.objects.create(title="WHO: blood pressure", text="Measure BP."),
        ApiToken: token,
        EHRClient: EHRClient.objects.create(
            organisation=organisation,
            name="North EHR",
            issuer="https://ehr.north.example",
            jwks_url="https://ehr.north.example/jwks",
        ),
        AuditEvent: audit_record(AuditAction.VIEW_PATIENT, obj=patient, organisation_id=organisation.pk),
    }
    for model in admin.site._registry:
        if model not in rows:
            found = _north(model, organisation)
            if found is not None:
                rows[model] = found
    missing = [
        model._meta.label
        for model in admin.site._registry
        if model not in rows and model._meta.app_label not in ("auth", "axes")
    ]
    assert not missing, f"build a North Clinic row for {missing}"
    return patient, rows


def _prompt_and_guidance(patient):
    """Stored rows as the prompt and guidance services leave them (without building a prompt: that is tested
    elsewhere)."""
    template = pr.PromptTemplate.objects.get(active=True)
    prompt = pr.PersonalizedPrompt.objects.create(
        patient=patient,
        question="Blood pressure?",
        consultation_date=timezone.now().date(),
        template=template,
        template_version=template.version,
        text="…",
        inputs_hash="0" * 64,
    )
    guidance = pr.GuidanceRequest.objects.create(
        patient=patient,
        question="Blood pressure?",
        consultation_date=timezone.now().date(),
        endpoint=pr.LLMEndpoint.objects.get(is_default=True),
    )
    return prompt, guidance


def _north(model, organisation):
    if model is m.Organisation:
        return organisation
    if model in SHARED:
        return model.objects.first()
    for path in ("organisation", "patient__organisation"):
        try:
            return model.objects.filter(**{path: organisation}).first()
        except Exception:  # noqa: BLE001 - the model has no such path; try the next
            continue
    return None


def _outsider_staff(other_organisation, role):
    user = make_member(f"{role}-south", other_organisation, role, is_staff=True)
    user.groups.add(curator_group_ensure())
    return user


def _url(model, view, *args):
    try:
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def _snapshot(obj):
    try:
        fresh = type(obj)._default_manager.get(pk=obj.pk)
    except type(obj).DoesNotExist:
        return None
    return {key: str(value) if isinstance(value, FieldFile) else value for key, value in model_to_dict(fresh).items()}


def _counts():
    return {
        model: model._default_manager.count()
        for model in admin.site._registry
        if model not in (AuditEvent,) and model._meta.app_label != "axes"
    }


@pytest.mark.parametrize("role", [Role.CURATOR, Role.ADMIN])
def test_an_outsider_reaches_no_north_row_through_any_admin_url(client, north_rows, other_organisation, role):
    patient, rows = north_rows
    outsider = _outsider_staff(other_organisation, role)
    client.force_login(outsider)
    markers = [patient.family_name, patient.given_names, patient.external_id]
    before = {model: _snapshot(obj) for model, obj in rows.items()}
    counts = _counts()
    south = str(other_organisation.pk)

    for model, model_admin in admin.site._registry.items():
        obj = rows.get(model)
        shared = model in SHARED
        changelist = _url(model, "changelist")
        listing = client.get(changelist)
        assert listing.status_code in (200, 403), changelist
        if listing.status_code == 200 and obj is not None and not shared:
            assert obj.pk not in {row.pk for row in listing.context["cl"].queryset}, changelist
        if obj is None:
            continue
        pk = obj.pk
        steal = {
            "organisation": south,
            "role": Role.ADMIN,
            "name": "stolen",
            "version": "stolen",
            "title": "stolen",
            "is_default": "on",
            "active": "on",
            "kind": "openai",
        }
        history_ids = list(obj.history.values_list("history_id", flat=True)) if hasattr(obj, "history") else []
        attempts = [
            ("get", _url(model, "change", pk), None),
            ("post", _url(model, "change", pk), steal),
            ("get", _url(model, "history", pk), None),
            ("get", _url(model, "delete", pk), None),
            ("post", _url(model, "delete", pk), {"post": "yes"}),
        ]
        for history_id in history_ids[:2]:
            attempts += [
                ("get", _url(model, "simple_history", pk, history_id), None),
                ("post", _url(model, "simple_history", pk, history_id), steal),
            ]
        for action in model_admin.get_actions(_request_for(outsider)) or {}:
            attempts.append(("post", changelist, {"action": action, "_selected_action": [pk], "post": "yes"}))
        for method, url, data in attempts:
            if url is None:
                continue
            response = getattr(client, method)(url, data or {})
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if not shared:
                assert response.status_code in (200, 302, 403, 404), (method, url, response.status_code)
                text = body.decode(errors="replace")
                assert not any(marker and marker in text for marker in markers), (method, url)
                if response.status_code == 200 and method == "get":
                    assert "csv" not in response.get("Content-Type", "") or text.count("\n") <= 1, (method, url)
            else:
                assert response.status_code != 500, (method, url)
        assert _snapshot(obj) == before[model], f"{model._meta.label} changed by an outsider"
        if not shared:
            assert AuditEvent.objects.filter(
                action=AuditAction.ACCESS_DENIED, object_type=model._meta.label, object_id=str(pk)
            ).exists(), f"refusals on {model._meta.label} are not audited"

    assert _counts() == counts
    assert patient.__class__.objects.get(pk=patient.pk).organisation_id == patient.organisation_id


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


@pytest.fixture
def south_curator_client(client, other_organisation):
    client.force_login(_outsider_staff(other_organisation, Role.CURATOR))
    return client


def test_an_outsider_curator_cannot_read_a_patients_history_or_revert_it_into_her_organisation(
    south_curator_client, imported_patient, other_organisation, curator
):
    imported_patient.family_name = "Changedname"
    imported_patient._history_user = curator
    imported_patient.save()
    version = imported_patient.history.last()
    history = south_curator_client.get(reverse("admin:patients_patient_history", args=[imported_patient.pk]))
    detail = south_curator_client.get(
        reverse("admin:patients_patient_simple_history", args=[imported_patient.pk, version.history_id])
    )
    revert = south_curator_client.post(
        reverse("admin:patients_patient_simple_history", args=[imported_patient.pk, version.history_id]),
        {"organisation": other_organisation.pk, "gender": "female", "external_id": "pat-1"},
    )
    assert (history.status_code, detail.status_code, revert.status_code) == (404, 404, 404)
    assert b"Changedname" not in history.content + detail.content
    imported_patient.refresh_from_db()
    assert imported_patient.organisation.slug == "north-clinic"
    denied = AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED, object_type="patients.Patient")
    assert denied.count() == 3
    assert set(denied.values_list("object_id", flat=True)) == {str(imported_patient.pk)}


def test_an_outsider_curator_cannot_read_a_memberships_history(south_curator_client, clinician):
    membership = clinician.membership
    version = membership.history.first()
    url = reverse("admin:patients_membership_simple_history", args=[membership.pk, version.history_id])
    assert south_curator_client.get(url).status_code == 404
    assert (
        south_curator_client.get(reverse("admin:patients_membership_history", args=[membership.pk])).status_code == 404
    )


def test_a_curator_still_reads_and_reverts_her_own_patients_history(curator_client, imported_patient, curator):
    imported_patient._history_user = curator
    for name in ("Original", "Typo"):
        imported_patient.family_name = name
        imported_patient.save()
    first = imported_patient.history.get(family_name="Original")
    url = reverse("admin:patients_patient_simple_history", args=[imported_patient.pk, first.history_id])
    assert curator_client.get(reverse("admin:patients_patient_history", args=[imported_patient.pk])).status_code == 200
    page = curator_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}
    data["identifiers"] = data["address"] = data["telecom"] = "[]"
    response = curator_client.post(url, data)
    assert response.status_code == 302, getattr(response, "context", {}) and response.context["adminform"].form.errors
    imported_patient.refresh_from_db()
    assert imported_patient.family_name == "Original"


def _give_role(client, membership, role, url=None):
    """Post the membership's change form (or a history version's revert) with `role`; reload the membership."""
    url = url or reverse("admin:patients_membership_change", args=[membership.pk])
    response = client.post(url, {"user": membership.user_id, "organisation": membership.organisation_id, "role": role})
    membership.refresh_from_db()
    return response


def test_a_curator_cannot_make_herself_an_admin(curator_client, curator):
    membership = curator.membership
    response = _give_role(curator_client, membership, Role.ADMIN)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert membership.role == Role.CURATOR
    assert curator_client.get(reverse("admin:audit_auditevent_changelist")).status_code == 403
    assert not AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGE).exists()


def test_nobody_raises_their_own_role_even_through_a_history_revert(curator_client, curator):
    membership = curator.membership
    membership.role = Role.ADMIN
    membership.save()  # once an admin…
    membership.role = Role.CURATOR
    membership.save()  # …then demoted
    was_admin = membership.history.filter(role=Role.ADMIN).get()
    response = _give_role(
        curator_client,
        membership,
        Role.ADMIN,
        reverse("admin:patients_membership_simple_history", args=[membership.pk, was_admin.history_id]),
    )
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert membership.role == Role.CURATOR


def test_a_curator_may_not_grant_a_role_above_her_own(curator_client, clinician):
    membership = clinician.membership
    assert _give_role(curator_client, membership, Role.ADMIN).status_code == 200
    assert membership.role == Role.CLINICIAN


def test_a_curator_may_not_change_an_admins_membership(curator_client, organisation):
    boss = make_member("admin-north", organisation, Role.ADMIN)
    assert _give_role(curator_client, boss.membership, Role.CLINICIAN).status_code == 200
    assert boss.membership.role == Role.ADMIN


def test_a_curator_may_not_remove_an_admin(curator_client, organisation):
    boss = make_member("admin-north", organisation, Role.ADMIN)
    response = curator_client.post(
        reverse("admin:patients_membership_delete", args=[boss.membership.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert m.Membership.objects.filter(pk=boss.membership.pk).exists()


def test_a_curator_makes_a_colleague_curator_and_the_role_change_is_audited(curator_client, curator, clinician):
    membership = clinician.membership
    assert _give_role(curator_client, membership, Role.CURATOR).status_code == 302
    assert membership.role == Role.CURATOR
    event = AuditEvent.objects.get(action=AuditAction.ROLE_CHANGE)
    assert event.actor == curator
    assert event.details == {"user": clinician.pk, "from": "clinician", "to": "curator"}


def test_a_curator_cannot_issue_an_api_token_for_an_admin_account(curator_client, organisation):
    boss = make_member("admin-north", organisation, Role.ADMIN)
    response = curator_client.post(reverse("admin:api_apitoken_add"), {"user": boss.pk, "name": "escalate"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not ApiToken.objects.filter(user=boss).exists()


def test_a_curator_sees_the_llm_endpoints_but_cannot_repoint_the_default(curator_client):
    endpoint = pr.LLMEndpoint.objects.get(is_default=True)
    url = reverse("admin:prompting_llmendpoint_change", args=[endpoint.pk])
    assert curator_client.get(url).status_code == 200  # read-only
    response = curator_client.post(
        url,
        {
            "name": endpoint.name,
            "kind": "openai",
            "settings": '{"base_url": "http://evil"}',
            "is_default": "on",
            "active": "on",
            "openness": endpoint.openness,
        },
    )
    assert response.status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.kind != "openai" or "evil" not in str(endpoint.settings)
    assert (
        curator_client.post(reverse("admin:prompting_llmendpoint_add"), {"name": "mine", "kind": "openai"}).status_code
        == 403
    )


def test_a_curator_cannot_activate_another_prompt_template(curator_client):
    template = pr.PromptTemplate.objects.create(version="mine", instructions="Say nothing.", active=False)
    curator_client.post(
        reverse("admin:prompting_prompttemplate_changelist"), {"action": "activate", "_selected_action": [template.pk]}
    )
    template.refresh_from_db()
    assert not template.active


def test_a_curator_cannot_edit_shared_knowledge_or_the_care_catalogue(curator_client):
    document = pr.KnowledgeDocument.objects.create(title="WHO: anaemia", text="Give iron.")
    item = m.CareItem.objects.create(slug="iron", name="Iron", category="intervention")
    assert (
        curator_client.post(
            reverse("admin:prompting_knowledgedocument_change", args=[document.pk]), {"title": "Mine", "text": "x"}
        ).status_code
        == 403
    )
    assert (
        curator_client.post(reverse("admin:patients_careitem_delete", args=[item.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert pr.KnowledgeDocument.objects.get(pk=document.pk).title == "WHO: anaemia"
    assert m.CareItem.objects.filter(pk=item.pk).exists()


def test_a_site_administrator_repoints_the_default_llm(client, organisation):
    operator = make_member("operator", organisation, Role.CURATOR, is_staff=True)
    operator.groups.add(curator_group_ensure(), site_admin_group_ensure())
    client.force_login(operator)
    endpoint = pr.LLMEndpoint.objects.get(is_default=True)
    page = client.get(reverse("admin:prompting_llmendpoint_change", args=[endpoint.pk]))
    form = page.context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}
    data["settings"] = '{"model_path": "elsewhere.gguf"}'
    data = {k: v for k, v in data.items() if v is not False}
    response = client.post(reverse("admin:prompting_llmendpoint_change", args=[endpoint.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    endpoint.refresh_from_db()
    assert endpoint.settings == {"model_path": "elsewhere.gguf"}


def test_curators_groups_hold_no_right_to_change_shared_settings(curator):
    curator.groups.add(curator_group_ensure())
    assert curator.has_perm("prompting.view_llmendpoint")
    assert curator.has_perm("patients.change_patient")
    assert not any(
        curator.has_perm(p)
        for p in (
            "prompting.change_llmendpoint",
            "prompting.add_prompttemplate",
            "prompting.delete_knowledgedocument",
            "patients.change_careitem",
            "patients.add_organisation",
            "patients.manage_site_settings",
        )
    )
    assert Group.objects.filter(name="Curators").exists()


def test_guidance_and_prompt_history_pages_open_for_their_curator_and_not_for_an_outsider(
    curator_client, imported_patient, client, other_organisation
):
    prompt, guidance = _prompt_and_guidance(imported_patient)
    for name, obj in (("prompting_personalizedprompt", prompt), ("prompting_guidancerequest", guidance)):
        assert curator_client.get(reverse(f"admin:{name}_history", args=[obj.pk])).status_code == 200
    client.force_login(_outsider_staff(other_organisation, Role.CURATOR))
    for name, obj in (("prompting_personalizedprompt", prompt), ("prompting_guidancerequest", guidance)):
        assert client.get(reverse(f"admin:{name}_history", args=[obj.pk])).status_code == 302
