"""The audit chain holds against someone who can rewrite the database but does not hold the key kept
outside it; anchors written outside the database catch what the database alone cannot; a chain
from before keying is sealed only when it is intact; keys rotate without breaking the chain."""

import importlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.chain import entry_hash, key_fingerprint, legacy_hash
from audit.models import AuditAction, AuditEvent, AuditHead
from audit.services import _payload, audit_keyring, audit_record, audit_verify

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "key-a-" + "a" * 40
KEY_B = "key-b-" + "b" * 40


def record(clinician, organisation, count: int, start: int = 0) -> list[AuditEvent]:
    return [
        audit_record(
            AuditAction.VIEW_PATIENT,
            object_type="patients.Patient",
            object_id=n,
            actor=clinician,
            organisation_id=organisation.pk,
        )
        for n in range(start, start + count)
    ]


def rewrite_from(entry_id: int, rehash, *, key_id: str | None = None) -> None:
    """What someone with write access to the database does after editing an entry: re-hash it and every later entry
    with `rehash(prev_hash, payload)`, and point the head at the new last hash."""
    prev = None
    for event in AuditEvent.objects.filter(id__gte=entry_id).order_by("id"):
        event.prev_hash = prev or event.prev_hash
        event.hash = rehash(event.prev_hash, _payload(event))
        if key_id is not None:
            event.key_id = key_id
        event.save()
        prev = event.hash
    AuditHead.objects.filter(pk=1).update(last_hash=prev)


def broken_at() -> int | None:
    broken = audit_verify()[1]
    assert broken is not None, "the chain verified"
    return broken.event_id


@pytest.fixture
def trail(organisation, clinician):
    return record(clinician, organisation, 5)


def edit(event: AuditEvent) -> None:
    AuditEvent.objects.filter(pk=event.pk).update(object_id="999")


class TestSomeoneWhoCanRewriteTheDatabaseButHasNoKey:
    def test_cannot_edit_an_entry_and_rehash_every_later_one_and_the_head_with_plain_sha256(self, trail):
        edit(trail[2])
        rewrite_from(trail[2].pk, legacy_hash)
        with pytest.raises(CommandError, match=f"entry {trail[2].pk}: its content no longer matches"):
            call_command("verify_audit")
        assert broken_at() == trail[2].pk

    def test_cannot_pass_the_rehashed_entries_off_as_written_before_the_chain_was_keyed(self, trail):
        edit(trail[2])
        rewrite_from(trail[2].pk, legacy_hash, key_id="")
        with pytest.raises(CommandError, match=f"entry {trail[2].pk}: it is not keyed"):
            call_command("verify_audit")

    @pytest.mark.parametrize("claimed_key", ["the real key's id", "the wrong key's id"])
    def test_cannot_edit_an_entry_and_rehash_the_rest_under_a_key_of_their_own(self, trail, claimed_key):
        wrong = b"a key the attacker made up, 32+ bytes long"
        edit(trail[2])
        rewrite_from(
            trail[2].pk,
            lambda prev, payload: entry_hash(wrong, prev, payload),
            key_id=None if claimed_key == "the real key's id" else key_fingerprint(wrong),
        )
        with pytest.raises(CommandError, match=f"entry {trail[2].pk}: "):
            call_command("verify_audit")
        assert broken_at() == trail[2].pk

    def test_cannot_drop_the_newest_entries_and_point_the_head_back(self, trail):
        AuditEvent.objects.filter(pk__in=[e.pk for e in trail[-2:]]).delete()
        AuditHead.objects.filter(pk=1).update(last_hash=trail[-3].hash)
        with pytest.raises(CommandError, match="the chain's end: the chain's head was rewritten"):
            call_command("verify_audit")

    def test_cannot_drop_the_oldest_entries_and_move_the_trusted_start_after_them(self, trail):
        AuditEvent.objects.filter(pk__in=[e.pk for e in trail[:2]]).delete()
        AuditHead.objects.filter(pk=1).update(anchor_hash=trail[2].prev_hash)
        assert "head was rewritten" in audit_verify()[1].reason

    def test_an_untouched_keyed_chain_still_verifies(self, trail, capsys):
        call_command("verify_audit")
        assert "5 entries verified" in capsys.readouterr().out
        assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {audit_keyring().current_id}


def anchors(settings) -> list[Path]:
    return sorted(Path(settings.PMLM_AUDIT_ANCHOR_DIR).glob("anchor-*.json"))


class TestAnchorsOutsideTheDatabase:
    def test_an_anchor_is_the_signed_head_in_a_file_and_verify_checks_it(self, trail, settings, capsys):
        call_command("anchor_audit")
        [path] = anchors(settings)
        anchored = json.loads(path.read_text())
        assert anchored["entry"] == trail[-1].pk
        assert anchored["hash"] == trail[-1].hash
        assert anchored["entries"] == 5
        assert anchored["key_id"] == audit_keyring().current_id
        assert len(anchored["mac"]) == 64
        call_command("verify_audit")
        assert f"the latest anchor ({path.name}) included" in capsys.readouterr().out

    def test_dropping_the_newest_entries_and_replaying_an_older_sealed_head_is_caught_only_by_the_anchor(
        self, organisation, clinician, settings
    ):
        record(clinician, organisation, 3)
        older_head = AuditHead.objects.values("last_hash", "key_id", "seal").get(pk=1)  # a copy they kept
        newest = record(clinician, organisation, 2, start=3)
        call_command("anchor_audit")
        AuditEvent.objects.filter(pk__in=[e.pk for e in newest]).delete()
        AuditHead.objects.filter(pk=1).update(**older_head)
        broken = audit_verify()[1]
        assert broken is not None
        assert f"entries up to entry {newest[-1].pk}" in broken.reason
        assert "are missing" in broken.reason
        for path in anchors(settings):
            path.unlink()
        assert audit_verify()[1] is None  # without the anchor, the replayed head is consistent

    def test_a_chain_rewritten_by_someone_who_stole_the_key_differs_from_its_anchor(self, trail):
        call_command("anchor_audit")
        edit(trail[1])
        key = audit_keyring().current
        rewrite_from(trail[1].pk, lambda prev, payload: entry_hash(key, prev, payload))
        from audit.services import _seal_head

        _seal_head(
            anchor_hash=AuditHead.objects.get(pk=1).anchor_hash,
            last_hash=AuditEvent.objects.order_by("-id").first().hash,
        )
        broken = audit_verify()[1]
        assert broken.event_id == trail[-1].pk
        assert "differs from the anchor" in broken.reason

    def test_an_anchor_edited_on_disk_is_not_trusted(self, trail, settings):
        call_command("anchor_audit")
        [path] = anchors(settings)
        anchored = json.loads(path.read_text())
        path.write_text(json.dumps({**anchored, "entry": trail[1].pk, "hash": trail[1].hash}))
        assert "is not signed by a key this deployment holds" in audit_verify()[1].reason

    def test_a_broken_chain_is_not_anchored(self, trail, settings):
        edit(trail[2])
        with pytest.raises(CommandError, match=f"Not anchored. Audit trail broken at entry {trail[2].pk}"):
            call_command("anchor_audit")
        assert anchors(settings) == []

    def test_a_head_that_has_not_moved_is_anchored_once(self, trail, organisation, clinician, settings):
        call_command("anchor_audit")
        call_command("anchor_audit")
        assert len(anchors(settings)) == 1
        record(clinician, organisation, 1, start=9)
        call_command("anchor_audit")
        assert len(anchors(settings)) == 2

    def test_entries_purged_past_retention_after_they_were_anchored_leave_the_chain_verifiable(
        self, organisation, clinician, monkeypatch, settings
    ):
        import audit.services

        old = timezone.now() - timedelta(days=settings.PMLM_AUDIT_RETENTION_DAYS + 30)
        monkeypatch.setattr(audit.services.timezone, "now", lambda: old)
        record(clinician, organisation, 3)
        call_command("anchor_audit")
        monkeypatch.undo()
        record(clinician, organisation, 2, start=3)
        call_command("purge_audit")
        assert AuditEvent.objects.count() == 3
        assert audit_verify()[1] is None

    def test_beat_anchors_the_chain_every_hour(self, trail, settings):
        from audit.tasks import anchor_audit_task

        schedule = settings.CELERY_BEAT_SCHEDULE["anchor-audit-chain"]
        assert schedule["task"] == "audit.tasks.anchor_audit_task"
        assert schedule["schedule"] == 3600.0
        assert anchor_audit_task() == str(anchors(settings)[0])


class TestTheKey:
    def test_production_refuses_to_start_without_an_audit_key_of_32_characters(self, tmp_path):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PMLM_AUDIT"))}
        base |= {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s" * 60, "PMLM_VAR_DIR": str(tmp_path)}
        for extra in ({}, {"PMLM_AUDIT_KEY": "too-short"}):
            run = subprocess.run(
                [sys.executable, "manage.py", "check"],
                cwd=ROOT,
                env=base | extra,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode != 0
            assert "PMLM_AUDIT_KEY" in run.stderr

    def test_the_key_is_never_written_to_the_database(self, settings, organisation, clinician):
        settings.PMLM_AUDIT_KEY = KEY_A
        record(clinician, organisation, 2)
        stored = json.dumps([list(AuditEvent.objects.values()), list(AuditHead.objects.values())], default=str)
        assert "a" * 40 not in stored
        assert KEY_A.encode().hex() not in stored
        assert audit_keyring().current_id in stored  # its fingerprint names it

    def test_the_chain_module_needs_no_django(self):
        code = "import sys, audit.chain; print(sorted(m for m in sys.modules if m.startswith('django')))"
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.stdout.strip() == "[]", run.stderr


class TestKeyRotation:
    @pytest.fixture
    def rotated(self, settings, organisation, clinician):
        """Two entries under key A, then key B is current with A retired, and two entries under B."""
        settings.PMLM_AUDIT_KEY = KEY_A
        before = record(clinician, organisation, 2)
        settings.PMLM_AUDIT_KEY, settings.PMLM_AUDIT_RETIRED_KEYS = KEY_B, [KEY_A]
        return before, record(clinician, organisation, 2, start=2)

    def test_after_a_rotation_each_entry_verifies_under_the_key_it_was_written_with(self, rotated):
        before, after = rotated
        assert AuditEvent.objects.get(pk=before[0].pk).key_id == key_fingerprint(KEY_A.encode())
        assert AuditEvent.objects.get(pk=after[0].pk).key_id == key_fingerprint(KEY_B.encode())
        assert audit_verify() == (4, None)

    def test_entries_under_a_key_that_was_dropped_too_early_are_reported_not_trusted(self, rotated, settings):
        settings.PMLM_AUDIT_RETIRED_KEYS = []
        broken = audit_verify()[1]
        assert broken.event_id == rotated[0][0].pk
        assert "is not one this deployment holds" in broken.reason

    def test_sealing_after_a_rotation_moves_every_entry_to_the_new_key_so_the_old_one_can_go(
        self, rotated, settings, capsys
    ):
        call_command("seal_audit")
        assert f"Sealed 4 entries under key {key_fingerprint(KEY_B.encode())}" in capsys.readouterr().out
        settings.PMLM_AUDIT_RETIRED_KEYS = []
        assert audit_verify() == (4, None)
        assert len(anchors(settings)) == 1


class TestTheUpgradeFromThePlainSha256Chain:
    @pytest.fixture
    def legacy(self, trail):
        """The chain as an older release left it: plain SHA-256 hashes, no key ids, an unsealed head."""
        rewrite_from(trail[0].pk, legacy_hash, key_id="")
        AuditHead.objects.filter(pk=1).update(key_id="", seal="")
        return trail

    def test_a_legacy_chain_is_reported_until_it_is_sealed(self, legacy):
        assert broken_at() == legacy[0].pk
        assert "it is not keyed" in audit_verify()[1].reason

    def test_sealing_checks_the_legacy_chain_then_rehashes_it_under_the_key(self, legacy, settings, capsys):
        call_command("seal_audit")
        assert "Sealed 5 entries" in capsys.readouterr().out
        assert audit_verify() == (5, None)
        assert len(anchors(settings)) == 1
        assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {audit_keyring().current_id}

    def test_a_legacy_chain_that_is_already_broken_is_refused_not_sealed(self, legacy):
        edit(legacy[3])
        with pytest.raises(CommandError, match=f"Not sealed. Audit trail broken at entry {legacy[3].pk}"):
            call_command("seal_audit")
        assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {""}

    def test_a_plain_sha256_entry_after_keyed_ones_is_refused(self, legacy, organisation, clinician):
        call_command("seal_audit")
        later = record(clinician, organisation, 1, start=5)[0]
        rewrite_from(later.pk, legacy_hash, key_id="")
        with pytest.raises(CommandError, match=f"entry {later.pk}: it is a plain SHA-256 entry after keyed ones"):
            call_command("seal_audit")

    def test_the_migration_seals_an_intact_legacy_chain_and_undoing_it_restores_plain_sha256(self, legacy):
        from django.apps import apps

        migration = importlib.import_module(MIGRATION)
        migration.seal_existing(apps, None)
        assert audit_verify() == (5, None)
        migration.unseal(apps, None)
        assert set(AuditEvent.objects.values_list("key_id", flat=True)) == {""}
        assert all(e.hash == legacy_hash(e.prev_hash, _payload(e)) for e in AuditEvent.objects.all())

    def test_the_migration_leaves_a_broken_legacy_chain_for_verify_to_report(self, legacy, capsys):
        from django.apps import apps

        edit(legacy[1])
        importlib.import_module(MIGRATION).seal_existing(apps, None)
        assert "NOT sealed" in capsys.readouterr().err
        assert broken_at() == legacy[0].pk


MIGRATION = "audit.migrations.0003_keyed_chain"
