from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from api import urls as api_urls
from cdshooks import smart_views
from cdshooks import views as cds_views
from patients import views as patient_views
from pmlm_site.health import healthz
from prompting import views as prompting_views

urlpatterns = [
    path("", patient_views.home, name="home"),
    path("healthz", healthz, name="healthz"),  # readiness probe: database, broker, default LLM
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("patients/", include("patients.urls")),
    path("patients/", include("prompting.workspace_urls")),  # her workspace, under her place in the list
    path("refinement/", include("prompting.refinement_urls")),
    path("evaluations/", include("prompting.evaluation_urls")),
    path("ab/", prompting_views.ab_summary_page, name="ab-summary"),
    path("jobs/", prompting_views.jobs_page, name="jobs"),
    path("api/v1/", include((api_urls.v1, "api"), namespace="v1")),
    path("api/", include((api_urls.urlpatterns, "api"), namespace="api")),
    path("cds-services", cds_views.services, name="cds-services"),
    path("cds-services/<str:service_id>", cds_views.service, name="cds-service"),
    path("smart/launch", smart_views.launch, name="smart-launch"),
    path("smart/callback", smart_views.callback, name="smart-callback"),
    path("admin/", admin.site.urls),
]

admin.site.site_header = "PMLM clinic — curation"
admin.site.site_title = "PMLM clinic curation"
admin.site.index_title = "Records, catalogue and imports"

# Errors Django answers outside a view: JSON under /api/, Django's pages elsewhere.
handler400 = "pmlm_site.error_views.bad_request"
handler403 = "pmlm_site.error_views.permission_denied"
handler404 = "pmlm_site.error_views.not_found"
handler500 = "pmlm_site.error_views.server_error"
