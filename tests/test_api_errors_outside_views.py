"""Errors Django answers outside the API's views still reach a partner as the API's JSON error shape."""

from django.test import Client
from django.urls import path

from pmlm_site import urls as site_urls
from tests.helpers import is_error


def test_an_unknown_api_address_is_a_json_404_and_an_unknown_page_is_still_a_page(db):
    client = Client()
    response = client.get("/api/v1/no-such-thing/")
    assert is_error(response, 404)
    assert response["Content-Type"] == "application/json"
    page = client.get("/no-such-page/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def _crash(request):
    raise RuntimeError("boom")


# A URLconf with plain Django views that fail, under /api/ and among the pages: faults outside DRF. It uses the
# site's own error handlers.
urlpatterns = [path("api/v1/crash/", _crash), path("crash/", _crash)]
handler500 = site_urls.handler500


def test_a_crash_outside_drf_under_the_api_is_a_json_500_and_elsewhere_djangos_page(db, settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/crash/")
    assert is_error(response, 500)
    assert "boom" not in response.content.decode()  # the fault is logged, never shown
    page = client.get("/crash/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


def test_the_site_answers_its_errors_with_these_handlers():
    assert (site_urls.handler400, site_urls.handler403, site_urls.handler404, site_urls.handler500) == (
        "pmlm_site.error_views.bad_request",
        "pmlm_site.error_views.permission_denied",
        "pmlm_site.error_views.not_found",
        "pmlm_site.error_views.server_error",
    )
