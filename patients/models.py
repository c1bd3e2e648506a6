"""The clinical record that the PMLM method reads.

Identifiable data (names, birth date, identifiers, address, telecom) lives only on `Patient`.
Every other row refers to the patient by key and carries clinical facts only, so a
de-identified view can be built without touching identifiable columns.

Rows imported from FHIR keep their FHIR id (`fhir_id`), unique per organisation and type, which
makes re-imports update in place instead of duplicating.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords


class Organisation(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        permissions = [("manage_site_settings", "Can change settings shared by every organisation")]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    CURATOR = "curator", "Data curator"
    PARTNER = "partner", "Partner service account"
    ADMIN = "admin", "Administrator"


class Membership(models.Model):
    """A person or partner service account working for one organisation, with one role."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    def __str__(self):
        return f"{self.user} — {self.get_role_display()} at {self.organisation}"


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


class Patient(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="patients")
    external_id = models.CharField(max_length=64, help_text="FHIR Patient.id as imported.")
    # Identifiable data: only here, never copied into other tables or prompts.
    given_names = models.CharField(max_length=200, blank=True)
    family_name = models.CharField(max_length=200, blank=True)
    name_prefix = models.CharField(max_length=50, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    identifiers = models.JSONField(default=list, blank=True)
    address = models.JSONField(default=list, blank=True)
    telecom = models.JSONField(default=list, blank=True)
    # Clinical and administrative facts.
    gender = models.CharField(max_length=10, choices=Gender.choices, default=Gender.UNKNOWN)
    deceased_at = models.DateTimeField(null=True, blank=True)
    marital_status = models.CharField(max_length=60, blank=True)
    language = models.CharField(max_length=60, blank=True)
    # Summary of the record kept current by the importer (see patients.summary), so lists can
    # filter on pregnancy without reading every record.
    pregnancy_start = models.DateField(
        null=True,
        blank=True,
        help_text=(
            "Start of her current pregnancy as her record dates it (gestational age, last menstrual period, or the "
            "pregnancy episode); when she is not pregnant, of her latest pregnancy episode."
        ),
    )
    pregnancy_end = models.DateField(null=True, blank=True, help_text="End of that episode; empty while ongoing.")
    pregnancy_evidence_at = models.DateField(
        null=True,
        blank=True,
        help_text=(
            "Pregnant, gestational age not recorded: the day of the latest antenatal care or pregnancy-only finding "
            "that shows it. Lists count her pregnant for 8 weeks after it."
        ),
    )
    last_encounter_at = models.DateTimeField(null=True, blank=True)
    # Raised by every write to her record (patients.services.patient_record_changed): what her record page
    # caches is keyed by it, so a cached page never outlives a change.
    record_version = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["record_version"])

    class Meta:
        ordering = ["family_name", "given_names", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "external_id"], name="patient_unique_external_id"),
        ]
        indexes = [
            models.Index(fields=["organisation", "family_name", "given_names"]),
            models.Index(fields=["organisation", "pregnancy_start"]),
        ]

    def __str__(self):
        return self.display_name or self.external_id

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.given_names, self.family_name) if part)


class ClinicalRecord(models.Model):
    """A row imported from (or exportable to) one FHIR resource of one patient."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    fhir_id = models.CharField(max_length=64)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def unique_fhir_id(model_name: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(fields=["organisation", "fhir_id"], name=f"{model_name}_unique_fhir_id")


class CodedMixin(models.Model):
    """A concept coded in a terminology: matched on system + code, never on display text."""

    code_system = models.CharField(max_length=120, blank=True)
    code = models.CharField(max_length=64, blank=True)
    display = models.CharField(max_length=300, blank=True)

    class Meta:
        abstract = True

    def __str__(self):
        return self.display or self.code


class Encounter(ClinicalRecord, CodedMixin):
    """`code` is the encounter type (SNOMED CT in Synthea)."""

    status = models.CharField(max_length=30)
    class_code = models.CharField(max_length=30, blank=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    reason_code = models.CharField(max_length=64, blank=True)
    reason_display = models.CharField(max_length=300, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-period_start"]
        constraints = [unique_fhir_id("encounter")]
        indexes = [models.Index(fields=["patient", "period_start"])]


class Observation(ClinicalRecord, CodedMixin):
    """One measurement or finding. Exactly one value form is usually set; panels carry components.

    `components` is a list of {"code_system", "code", "display", "value_quantity", "unit",
    "value_code_system", "value_code", "value_display", "value_string", "value_boolean"}.
    """

    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="observations"
    )
    status = models.CharField(max_length=30)
    category = models.CharField(max_length=60, blank=True)
    effective_at = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    value_quantity = models.FloatField(null=True, blank=True)
    value_unit = models.CharField(max_length=40, blank=True)
    value_code_system = models.CharField(max_length=120, blank=True)
    value_code = models.CharField(max_length=64, blank=True)
    value_display = models.CharField(max_length=300, blank=True)
    value_string = models.TextField(blank=True)
    value_boolean = models.BooleanField(null=True, blank=True)
    components = models.JSONField(default=list, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-effective_at"]
        constraints = [unique_fhir_id("observation")]
        indexes = [
            # The pipeline's main query: a patient's observations of some codes, in time order.
            models.Index(fields=["patient", "code", "effective_at"], name="obs_patient_code_time"),
            models.Index(fields=["patient", "effective_at"], name="obs_patient_time"),
        ]

    @property
    def value_text(self) -> str:
        """The value as a clinician reads it: rounded, with its unit; blood pressure as S/D."""
        if self.value_quantity is not None:
            return f"{_rounded(self.value_quantity)} {self.value_unit}".strip()
        if self.value_display or self.value_code:
            return self.value_display or self.value_code
        if self.value_string:
            return self.value_string
        if self.value_boolean is not None:
            return "yes" if self.value_boolean else "no"
        by_code = {c.get("code"): c.get("value_quantity") for c in self.components}
        if by_code.get("8480-6") is not None and by_code.get("8462-4") is not None:
            return f"{_rounded(by_code['8480-6'], 0)}/{_rounded(by_code['8462-4'], 0)} mmHg"
        return "; ".join(
            f"{c.get('display') or c.get('code')}: {_rounded(c['value_quantity'])} {c.get('unit', '')}".strip()
            for c in self.components
            if c.get("value_quantity") is not None
        )


def _rounded(value: float, digits: int = 1) -> str:
    return f"{round(value, digits):g}"


class Condition(ClinicalRecord, CodedMixin):
    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="conditions"
    )
    clinical_status = models.CharField(max_length=30, blank=True)
    verification_status = models.CharField(max_length=30, blank=True)
    onset_at = models.DateTimeField(null=True, blank=True)
    abatement_at = models.DateTimeField(null=True, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-onset_at"]
        constraints = [unique_fhir_id("condition")]
        indexes = [models.Index(fields=["patient", "code"])]


class MedicationRequest(ClinicalRecord, CodedMixin):
    """`code` is the medication (RxNorm)."""

    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="medication_requests"
    )
    status = models.CharField(max_length=30)
    intent = models.CharField(max_length=30)
    authored_at = models.DateTimeField(null=True, blank=True)
    dosage_text = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-authored_at"]
        constraints = [unique_fhir_id("medicationrequest")]
        indexes = [models.Index(fields=["patient", "authored_at"])]


class MedicationStatement(ClinicalRecord, CodedMixin):
    """What she reports taking (including over-the-counter medicines)."""

    status = models.CharField(max_length=30)
    effective_start = models.DateTimeField(null=True, blank=True)
    effective_end = models.DateTimeField(null=True, blank=True)
    dosage_text = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-effective_start"]
        constraints = [unique_fhir_id("medicationstatement")]


class AllergyIntolerance(ClinicalRecord, CodedMixin):
    clinical_status = models.CharField(max_length=30, blank=True)
    verification_status = models.CharField(max_length=30, blank=True)
    allergy_type = models.CharField(max_length=30, blank=True)
    category = models.CharField(max_length=60, blank=True)
    criticality = models.CharField(max_length=30, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-recorded_at"]
        constraints = [unique_fhir_id("allergyintolerance")]


class Procedure(ClinicalRecord, CodedMixin):
    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="procedures"
    )
    status = models.CharField(max_length=30)
    performed_start = models.DateTimeField(null=True, blank=True)
    performed_end = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-performed_start"]
        constraints = [unique_fhir_id("procedure")]
        indexes = [models.Index(fields=["patient", "code"])]


class Immunization(ClinicalRecord, CodedMixin):
    """`code` is the vaccine (CVX in Synthea)."""

    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="immunizations"
    )
    status = models.CharField(max_length=30)
    occurred_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [unique_fhir_id("immunization")]


class CarePlan(ClinicalRecord, CodedMixin):
    """`code` is the plan's category. `activities` lists {code_system, code, display, status}."""

    encounter = models.ForeignKey(
        Encounter, null=True, blank=True, on_delete=models.SET_NULL, related_name="care_plans"
    )
    status = models.CharField(max_length=30)
    intent = models.CharField(max_length=30)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    activities = models.JSONField(default=list, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-period_start"]
        constraints = [unique_fhir_id("careplan")]


class LifestyleKind(models.TextChoices):
    # Behaviours
    TOBACCO = "tobacco", "Tobacco smoking"
    SECONDHAND_SMOKE = "secondhand_smoke", "Second-hand smoke exposure"
    ALCOHOL = "alcohol", "Alcohol"
    SUBSTANCES = "substances", "Other substances"
    CAFFEINE = "caffeine", "Caffeine"
    ACTIVITY = "activity", "Physical activity"
    SLEEP = "sleep", "Sleep"
    DIET = "diet", "Diet"
    # Preferences about how she wants to be counselled
    DETAIL_LEVEL = "detail_level", "Preferred level of detail"
    COMMUNICATION_STYLE = "communication_style", "Communication style"
    LANGUAGE = "language", "Preferred language"
    DECISION_STYLE = "decision_style", "Decision-making style"


PREFERENCE_KINDS = frozenset(
    {
        LifestyleKind.DETAIL_LEVEL,
        LifestyleKind.COMMUNICATION_STYLE,
        LifestyleKind.LANGUAGE,
        LifestyleKind.DECISION_STYLE,
    }
)


class RecordSource(models.TextChoices):
    PATIENT_REPORTED = "patient_reported", "Reported by the patient"
    CLINICIAN = "clinician", "Recorded by a clinician"
    FOLLOW_UP = "follow_up", "Recorded at follow-up"
    GENERATED = "generated", "Generated demo data"


class LifestyleRecord(models.Model):
    """A behaviour or preference at a point in time; a series of them shows how she changed.

    `value` is the category in words (e.g. "daily smoker", "more detail"); `quantity` and
    `unit` hold a number where there is one (cigarettes per day, mg caffeine, hours of sleep).
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="lifestyle_records")
    kind = models.CharField(max_length=30, choices=LifestyleKind.choices)
    recorded_at = models.DateTimeField()
    value = models.CharField(max_length=120)
    quantity = models.FloatField(null=True, blank=True)
    unit = models.CharField(max_length=30, blank=True)
    source = models.CharField(max_length=20, choices=RecordSource.choices, default=RecordSource.CLINICIAN)
    note = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-recorded_at"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "kind", "recorded_at"], name="lifestyle_unique_per_time"),
        ]
        indexes = [models.Index(fields=["patient", "kind", "recorded_at"])]

    @property
    def is_preference(self) -> bool:
        return self.kind in PREFERENCE_KINDS

    def __str__(self):
        return f"{self.get_kind_display()}: {self.value}"


class CareItemCategory(models.TextChoices):
    INTERVENTION = "intervention", "Intervention"
    GUIDANCE_TOPIC = "guidance_topic", "Guidance topic"


class CareItem(models.Model):
    """A catalogue entry: an intervention or guidance topic whose uptake and benefit are rated."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=20, choices=CareItemCategory.choices)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class CareRating(models.Model):
    """How well a care item worked for her (adherence and benefit), 1 (poorly) to 5 (very well)."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="care_ratings")
    care_item = models.ForeignKey(CareItem, on_delete=models.PROTECT, related_name="ratings")
    rating = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    rated_on = models.DateField()
    source = models.CharField(max_length=20, choices=RecordSource.choices, default=RecordSource.FOLLOW_UP)
    note = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-rated_on"]
        constraints = [
            models.CheckConstraint(condition=models.Q(rating__gte=1, rating__lte=5), name="care_rating_1_to_5"),
            models.UniqueConstraint(fields=["patient", "care_item", "rated_on", "source"], name="care_rating_unique"),
        ]
        indexes = [models.Index(fields=["care_item", "patient"])]

    def __str__(self):
        return f"{self.care_item} rated {self.rating}"


class PhysicianRecommendation(models.Model):
    """What the physician advised at an encounter: the target reinforcement learning learns from."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="physician_recommendations")
    encounter = models.OneToOneField(Encounter, on_delete=models.CASCADE, related_name="physician_recommendation")
    text = models.TextField()
    author = models.CharField(max_length=200, blank=True, help_text="Role or name of the physician.")
    written_at = models.DateTimeField()
    source = models.CharField(max_length=20, choices=RecordSource.choices, default=RecordSource.CLINICIAN)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-written_at"]
        indexes = [models.Index(fields=["patient", "written_at"])]

    def __str__(self):
        return f"Recommendation at {self.written_at:%Y-%m-%d}"


class ImportStatus(models.TextChoices):
    IMPORTED = "imported", "Imported"
    REJECTED = "rejected", "Rejected"


class BundleImport(models.Model):
    """One attempt to import one FHIR Bundle: the audit of what came in and what happened."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="bundle_imports")
    source = models.CharField(max_length=500, help_text="File name or API request that carried the bundle.")
    status = models.CharField(max_length=20, choices=ImportStatus.choices)
    error = models.TextField(blank=True)
    counts = models.JSONField(
        default=dict, blank=True, help_text="Created, updated and skipped rows per resource type."
    )
    patient_external_ids = models.JSONField(default=list, blank=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField(auto_now_add=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.source} ({self.status})"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def finished(cls) -> tuple[str, ...]:
        return (cls.DONE, cls.FAILED, cls.CANCELLED)


class BackgroundJob(models.Model):
    """Work done by a Celery worker (every kind: guidance requests, imports, peer training, refinement,
    evaluations, comparisons): its status and progress, which pages and the API show. patients/jobs.py
    claims, advances, cancels, fails, finishes and sweeps every kind the same way."""

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    message = models.TextField(blank=True, help_text="Its status line: what it is doing, or how it ended.")
    error = models.TextField(blank=True, help_text="Why it failed, in full.")
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When its current claim started it.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_queued(self) -> bool:
        return self.status == JobStatus.QUEUED

    @property
    def is_running(self) -> bool:
        return self.status == JobStatus.RUNNING

    @property
    def is_unfinished(self) -> bool:
        """Queued or running: a page showing it keeps polling."""
        return self.status not in JobStatus.finished()

    @property
    def is_done(self) -> bool:
        return self.status == JobStatus.DONE

    @property
    def is_failed(self) -> bool:
        return self.status == JobStatus.FAILED

    @property
    def is_cancelled(self) -> bool:
        return self.status == JobStatus.CANCELLED

    @property
    def is_finished(self) -> bool:
        return self.status in JobStatus.finished()

    @property
    def failure(self) -> str:
        """Why it failed, for the jobs page: its error, else its status line."""
        return (self.error or self.message) if self.is_failed else ""


def import_upload_path(instance, filename):
    return f"imports/{instance.organisation.slug}/{filename}"


class ImportJob(BackgroundJob):
    """Bundles a curator uploaded, imported in the background by a Celery worker."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="import_jobs")
    upload = models.FileField(upload_to=import_upload_path, help_text="A FHIR Bundle as .json or .json.gz.")
    bundle_import = models.ForeignKey(BundleImport, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self):
        return f"Import {self.upload.name} ({self.status})"
