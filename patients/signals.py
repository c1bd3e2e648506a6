"""Every single-row write to her record raises her record version (`patient_record_changed`), in the writer's
transaction, so nothing cached from her record outlives a change. Bulk writers (imports, demo data, peer
training) call `patient_record_changed` themselves: bulk statements send no signals."""

from django.apps import apps
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save

from patients.models import CareItem, CareRating, Patient
from patients.services import patient_record_changed


def record_models() -> list:
    """The models whose rows are part of a patient's record: every model of this app that belongs to one."""
    return [
        model
        for model in apps.get_app_config("patients").get_models()
        if any(f.name == "patient" and f.related_model is Patient for f in model._meta.fields)
        and not hasattr(model, "instance_type")  # simple_history's copies are written with their originals
    ]


def _row_changed(sender, instance, **kwargs):
    patient_record_changed(patient_ids=[instance.patient_id])


def _row_deleted(sender, instance, origin=None, **kwargs):
    deleting_patients = isinstance(origin, Patient) or (isinstance(origin, QuerySet) and origin.model is Patient)
    if not deleting_patients:  # her rows go with her: there is no record left to cache
        patient_record_changed(patient_ids=[instance.patient_id])


def _patient_saved(sender, instance, created, **kwargs):
    if not created:
        patient_record_changed(patient_ids=[instance.pk])


def _care_item_saved(sender, instance, created, **kwargs):
    if not created:  # a renamed care item shows under its new name in every record that rated it
        patient_record_changed(patient_ids=CareRating.objects.filter(care_item=instance).values_list("patient_id"))


def connect():
    for model in record_models():
        post_save.connect(_row_changed, sender=model, dispatch_uid=f"record-changed-{model._meta.label}")
        post_delete.connect(_row_deleted, sender=model, dispatch_uid=f"record-deleted-{model._meta.label}")
    post_save.connect(_patient_saved, sender=Patient, dispatch_uid="record-changed-patient")
    post_save.connect(_care_item_saved, sender=CareItem, dispatch_uid="record-changed-care-item")
