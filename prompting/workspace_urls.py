"""The consultation workspace's pages, under /patients/<id>/ beside the patient list."""

from django.urls import path

from prompting import views, workspace_views

app_name = "workspace"
urlpatterns = [
    path("<int:pk>/", workspace_views.patient_workspace, name="patient"),
    path("<int:pk>/prompt/", views.prompt_panel, name="prompt"),
    path("<int:pk>/guidance/", views.guidance_create, name="guidance"),
    path("<int:pk>/guidance/prefill/", views.guidance_prefill_view, name="guidance-prefill"),
    path("<int:pk>/guidance/<int:guidance_id>/", views.guidance_detail, name="guidance-detail"),
    path("<int:pk>/guidance/<int:guidance_id>/prompt/", views.guidance_prompt, name="guidance-prompt"),
    path("<int:pk>/guidance/<int:guidance_id>/rate/", views.guidance_rate_view, name="guidance-rate"),
    path("<int:pk>/ab/", views.ab_create, name="ab"),
    path("<int:pk>/ab/<int:comparison_id>/", views.ab_detail, name="ab-detail"),
    path("<int:pk>/ab/<int:comparison_id>/pick/", views.ab_pick, name="ab-pick"),
]
