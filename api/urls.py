from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api import views

v1 = [
    path("patients/", views.PatientList.as_view(), name="patients"),
    path("patients/<str:patient_id>/", views.PatientDetail.as_view(), name="patient"),
    path("patients/<str:patient_id>/bundle/", views.PatientExport.as_view(), name="patient-bundle"),
    path("patients/<str:patient_id>/prompt/", views.PatientPrompt.as_view(), name="patient-prompt"),
    path("patients/<str:patient_id>/guidance/", views.PatientGuidance.as_view(), name="patient-guidance"),
    path("bundles/", views.BundleImport.as_view(), name="bundles"),
    path("guidance/<int:guidance_id>/", views.GuidanceDetail.as_view(), name="guidance"),
    path("guidance/<int:guidance_id>/ratings/", views.GuidanceRatings.as_view(), name="guidance-ratings"),
    path("peer-models/", views.PeerModelList.as_view(), name="peer-models"),
    path("refinement-runs/", views.RefinementRunList.as_view(), name="refinement-runs"),
    re_path(r"^[\s\S]*$", views.not_found),  # any address, one with a newline in it too
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view loads its start-up script from a URL, so the docs work under our Content Security Policy.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^[\s\S]*$", views.not_found),  # any address, one with a newline in it too
]
