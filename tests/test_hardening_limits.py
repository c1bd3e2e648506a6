"""Limits on queued LLM work and on request rates: pending guidance is capped per account (an API
token's) and per organisation, and the API throttle counts in one cache that every process shares."""

import os
import uuid
from types import SimpleNamespace

import pytest
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from api.throttling import TokenRateThrottle
from api.tokens import token_issue
from patients import models as pm
from prompting.errors import GuidanceError
from prompting.guidance import guidance_request_create
from prompting.models import GuidanceRequest
from tests.conftest import make_member
from tests.helpers import is_error

ASK = {"question": "Plan?", "at": "2025-05-02"}


def ask(api, token, **headers):
    return api("post", "/api/v1/patients/pat-1/guidance/", token, ASK, **headers)


class TestPendingGuidanceCap:
    def test_a_token_with_too_much_guidance_waiting_is_answered_429_with_retry_after(
        self, api, partner_token, imported_patient, tiny_policy, settings
    ):
        settings.PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT = 2
        assert [ask(api, partner_token).status_code for _ in range(2)] == [202, 202]
        refused = ask(api, partner_token)
        assert is_error(refused, 429)
        assert int(refused["Retry-After"]) > 0
        assert "waiting" in refused.json()["error"]["message"]
        assert GuidanceRequest.objects.count() == 2

        GuidanceRequest.objects.filter(pk=GuidanceRequest.objects.first().pk).update(status=pm.JobStatus.DONE)
        assert ask(api, partner_token).status_code == 202  # a finished request frees its place

    def test_a_retry_with_the_same_idempotency_key_is_not_refused_at_the_cap(
        self, api, partner_token, imported_patient, tiny_policy, settings
    ):
        settings.PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT = 1
        first = ask(api, partner_token, **{"Idempotency-Key": "visit-1"})
        again = ask(api, partner_token, **{"Idempotency-Key": "visit-1"})
        assert first.status_code == 202 == again.status_code
        assert again.json()["id"] == first.json()["id"]

    def test_the_organisation_cap_counts_every_account_and_the_page_tells_the_clinician(
        self, api, partner_token, client_for, clinician, imported_patient, tiny_policy, settings
    ):
        settings.PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION = 2
        other_token = token_issue(
            username=make_member("partner-north-2", imported_patient.organisation, pm.Role.PARTNER).username
        )[1]
        assert ask(api, partner_token).status_code == 202
        assert ask(api, other_token).status_code == 202
        assert is_error(ask(api, partner_token), 429)
        page = client_for(clinician).post(f"/patients/{imported_patient.pk}/guidance/", ASK)
        assert page.status_code == 200
        assert b'role="alert"' in page.content
        assert b"Your organisation already has 2" in page.content
        assert GuidanceRequest.objects.count() == 2

    def test_another_organisations_queue_does_not_count(self, imported_patient, foreign_patient, tiny_policy, settings):
        settings.PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION = 1
        guidance_request_create(patient=foreign_patient, question="Plan?")
        guidance_request_create(patient=imported_patient, question="Plan?")
        with pytest.raises(GuidanceError, match="already has 1 guidance request"):
            guidance_request_create(patient=imported_patient, question="Again?")


def shared_redis_caches(n: int):
    """n cache clients, as n separate processes would hold, on one Redis database under a key prefix of this test's
    own."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    host = (
        broker.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        if broker.startswith("redis://")
        else "127.0.0.1:6379"
    )
    location, prefix = f"redis://{host}/14", f"throttle-test-{uuid.uuid4().hex}"
    caches = [RedisCache(location, {"KEY_PREFIX": prefix}) for _ in range(n)]
    try:
        caches[0].get("ping")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"No Redis at {location}: {exc}")
    return caches


class TestSharedThrottle:
    def test_two_processes_sharing_one_redis_cache_count_requests_together(self, monkeypatch):
        monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "5/min"})
        request = SimpleNamespace(auth=SimpleNamespace(prefix="pmlm_shared"), user=None, META={})
        workers = []
        for cache in shared_redis_caches(2):
            throttle = TokenRateThrottle()
            throttle.cache = cache
            throttle.timer = lambda: 600_001.0  # one moment, at the start of a window: no time passes in this test
            workers.append(throttle)
        allowed = [workers[n % 2].allow_request(request, None) for n in range(12)]
        assert allowed.count(True) == 5
        assert allowed[:5] == [True] * 5
        assert 0 < workers[1].wait() <= 2 * 60  # until enough of this minute has slid out of the window

    def test_production_settings_without_a_shared_cache_fail_the_deploy_check(self):
        from api.checks import throttle_counts_are_shared

        with override_settings(
            DEBUG=False, CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        ):
            assert [w.id for w in throttle_counts_are_shared()] == ["pmlm.W001"]
        with override_settings(
            DEBUG=False,
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": "redis://cache.example.org:6379/2",
                }
            },
        ):
            assert throttle_counts_are_shared() == []
