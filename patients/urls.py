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
]
