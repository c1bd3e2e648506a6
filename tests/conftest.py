import json
import shutil

import pytest
from django.conf import settings

from api.tokens import token_issue
from patients import models as pm
from patients.models import Role
from patients.services import patient_import_bundle
from prompting.knowledge import knowledge_load_who
from prompting.models import LLMEndpoint
from tests import fhir_builders as fb
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory

PASSWORD = "a-long-test-password-1"


def make_member(username, organisation, role, **extra):
    user = UserFactory(username=username, **extra)
    MembershipFactory(user=user, organisation=organisation, role=role)
    return user


@pytest.fixture(autouse=True)
def fresh_cache():
    """API throttling counts requests in the cache: every test starts with a clean count."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def own_audit_anchors(settings, tmp_path_factory):
    """Audit anchors are files outside the database: each test writes its own, so none outlives its rolled-back
    chain."""
    settings.PMLM_AUDIT_ANCHOR_DIR = tmp_path_factory.mktemp("audit-anchors")


@pytest.fixture(autouse=True)
def audit_linked_as_written(settings):
    """Each audit entry is linked into the chain as it is written, so a test reads the trail as it stands; the tests
    of batched linking (test_audit_linking.py) set their own batch."""
    settings.PMLM_AUDIT_LINK_EVERY = 1


@pytest.fixture
def organisation(db):
    return OrganisationFactory(slug="north-clinic", name="North Clinic")


@pytest.fixture
def other_organisation(db):
    return OrganisationFactory(slug="south-clinic", name="South Clinic")


@pytest.fixture
def clinician(organisation):
    """The member most tests act as."""
    return make_member("dr-north", organisation, Role.CLINICIAN, first_name="Nia", last_name="North")


@pytest.fixture
def curator(organisation):
    """A colleague in the same organisation with another role."""
    return make_member("curator-north", organisation, Role.CURATOR, is_staff=True)


@pytest.fixture
def partner(organisation):
    return make_member("partner-north", organisation, Role.PARTNER)


@pytest.fixture
def outsider(other_organisation):
    """A clinician of another organisation: must never see North Clinic's patients."""
    return make_member("dr-south", other_organisation, Role.CLINICIAN)


@pytest.fixture
def imported_patient(organisation):
    result = patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-1"), source="test")
    assert result.ok, result.error
    return organisation.patients.get(external_id="pat-1")


@pytest.fixture
def foreign_patient(other_organisation):
    result = patient_import_bundle(organisation=other_organisation, bundle=fb.small_bundle("pat-south"), source="test")
    assert result.ok, result.error
    return other_organisation.patients.get(external_id="pat-south")


@pytest.fixture
def curator_client(client, curator):
    """Signed in to the admin as North Clinic's curator, with the curators' group's permissions."""
    from patients.demo.seed import curator_group_ensure

    curator.groups.add(curator_group_ensure())
    client.force_login(curator)
    return client


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny Llama made from a config with SmolLM2's own tokenizer and chat template: the real
    transformers and TRL code paths in seconds (its words are random, its behaviour is not)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from prompting.pmlm.tokens import build_tokenizer_file

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer_dir = settings.VAR_DIR / "models" / "smollm2-tokenizer"
    build_tokenizer_file(tokenizer_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, path / name)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


RAISED = "BP 150/95 mmHg is raised: repeat within a week, start home blood pressure monitoring and check urine protein."
NORMAL = "Blood pressure normal. Continue daily iron and folic acid; dating scan and booking bloods."


@pytest.fixture
def cohort(organisation):
    """Four pregnant patients, two hypertensive, each with a physician recommendation at her visit."""
    patients = []
    for n in range(4):
        pid = f"r-{n}"
        raised = n % 2 == 1
        bundle = fb.bundle(
            fb.patient(pid, family=f"Testfamily{n}", given=(f"Testgiven{n}",)),
            fb.encounter(f"{pid}-e", pid),
            fb.bp_panel(f"{pid}-bp", pid, f"{pid}-e", systolic=152 if raised else 118, diastolic=98 if raised else 74),
            fb.condition(f"{pid}-c", pid),
        )
        assert patient_import_bundle(organisation=organisation, bundle=bundle, source="test").ok
        patient = organisation.patients.get(external_id=pid)
        encounter = pm.Encounter.objects.get(patient=patient)
        pm.PhysicianRecommendation.objects.create(
            patient=patient, encounter=encounter, text=RAISED if raised else NORMAL, written_at=encounter.period_start
        )
        patients.append(patient)
    return patients


@pytest.fixture
def tiny_policy(settings, tiny_checkpoint, db):
    """The tiny model as the policy's starting point and as the target LLM (both real transformers code)."""
    settings.PMLM_REFINER_BASE_CHECKPOINT = str(tiny_checkpoint)
    LLMEndpoint.objects.update(is_default=False)
    return LLMEndpoint.objects.create(
        name="tiny-target",
        kind="transformers",
        is_default=True,
        max_tokens=8,
        settings={"checkpoint": str(tiny_checkpoint), "device": "cpu"},
    )


@pytest.fixture
def knowledge(db):
    """The WHO antenatal guidance, chunked and embedded for retrieval."""
    knowledge_load_who()


@pytest.fixture
def partner_token(partner):
    return token_issue(username=partner.username, name="EHR")[1]


@pytest.fixture
def their_token(other_organisation):
    user = make_member("partner-south", other_organisation, pm.Role.PARTNER)
    return token_issue(username=user.username)[1]


@pytest.fixture
def api(client):
    def call(method, path, token=None, body=None, content_type="application/json", **headers):
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if token:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        data = json.dumps(body) if body is not None and not isinstance(body, (str, bytes)) else body
        return (
            getattr(client, method)(path, data=data, content_type=content_type, **extra)
            if data is not None
            else getattr(client, method)(path, **extra)
        )

    return call
