import pytest

from patients.models import Role
from patients.services import patient_import_bundle
from tests import fhir_builders as fb
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory

PASSWORD = "a-long-test-password-1"


def make_member(username, organisation, role, **extra):
    user = UserFactory(username=username, **extra)
    MembershipFactory(user=user, organisation=organisation, role=role)
    return user


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
    result = patient_import_bundle(organisation=other_organisation,
                                   bundle=fb.small_bundle("pat-south"), source="test")
    assert result.ok, result.error
    return other_organisation.patients.get(external_id="pat-south")


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client
    return login
