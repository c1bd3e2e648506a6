from django.urls import path

from prompting import views as prompting_views

from . import views

app_name = "patients"
urlpatterns = [
    path("", views.patient_list, name="list"),
    path("<int:pk>/", views.patient_detail, name="detail"),
    path("<int:pk>/prompt/", prompting_views.prompt_panel, name="prompt"),
    path("<int:pk>/guidance/", prompting_views.guidance_create, name="guidance"),
    path("<int:pk>/guidance/<int:guidance_id>/", prompting_views.guidance_detail, name="guidance-detail"),
    path("<int:pk>/guidance/<int:guidance_id>/prompt/", prompting_views.guidance_prompt, name="guidance-prompt"),
    path("<int:pk>/guidance/<int:guidance_id>/rate/", prompting_views.guidance_rate_view, name="guidance-rate"),
    path("<int:pk>/ab/", prompting_views.ab_create, name="ab"),
    path("<int:pk>/ab/<int:comparison_id>/", prompting_views.ab_detail, name="ab-detail"),
    path("<int:pk>/ab/<int:comparison_id>/pick/", prompting_views.ab_pick, name="ab-pick"),
]
