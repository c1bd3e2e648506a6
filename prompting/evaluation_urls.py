from django.urls import path

from prompting import evaluation_views as views

app_name = "evaluations"

urlpatterns = [
    path("", views.evaluation_list, name="list"),
    path("start/", views.evaluation_start, name="start"),
    path("<int:pk>/", views.evaluation_detail, name="detail"),
    path("<int:pk>/cancel/", views.evaluation_cancel, name="cancel"),
    path("<int:pk>/export.<str:fmt>", views.evaluation_export, name="export"),
]
