"""Every single-row write to her record raises her record version (`patient_record_changed`), in the writer's
transaction, so nothing cached from her record outlives a change. Bulk writers (imports, demo data, peer
training) call `patient_record_changed` themselves: bulk statements send no signals.

A kept signed-in account (`patients.auth`) is dropped when the account, its membership or its organisation
changes."""

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save

from patients.auth import account_forget
from patients.models import CareItem, CareRating, Membership, Organisation, Patient
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


def forget_now_and_on_commit(forget, *args, **kwargs) -> None:
    """Drop a cached copy now (this transaction's own later reads see the change) and again once the change is
    committed (no reader re-caches the old copy in between). The token cache (`api.signals`) drops the same way."""
    forget(*args, **kwargs)
    transaction.on_commit(lambda: forget(*args, **kwargs))


def only_signed_in(update_fields) -> bool:
    """A save that only stamps the sign-in time: it changes nothing a page, a token or a session checks."""
    return update_fields is not None and set(update_fields) <= {"last_login"}


def _forget_accounts(user_ids) -> None:
    forget_now_and_on_commit(account_forget, *list(user_ids))


def _account_changed(sender, instance, update_fields=None, **kwargs):
    if not only_signed_in(update_fields):
        _forget_accounts([instance.pk])


def _membership_changed(sender, instance, **kwargs):
    _forget_accounts([instance.user_id])


def _organisation_changed(sender, instance, **kwargs):
    _forget_accounts(Membership.objects.filter(organisation=instance).values_list("user_id", flat=True))


def connect():
    for model in record_models():
        post_save.connect(_row_changed, sender=model, dispatch_uid=f"record-changed-{model._meta.label}")
        post_delete.connect(_row_deleted, sender=model, dispatch_uid=f"record-deleted-{model._meta.label}")
    post_save.connect(_patient_saved, sender=Patient, dispatch_uid="record-changed-patient")
    post_save.connect(_care_item_saved, sender=CareItem, dispatch_uid="record-changed-care-item")
    for done, signal in (("saved", post_save), ("deleted", post_delete)):
        signal.connect(_account_changed, sender=get_user_model(), dispatch_uid=f"account-{done}")
        signal.connect(_membership_changed, sender=Membership, dispatch_uid=f"account-membership-{done}")
        signal.connect(_organisation_changed, sender=Organisation, dispatch_uid=f"account-organisation-{done}")
