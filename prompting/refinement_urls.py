from django.urls import path

from prompting import refinement_views as views

app_name = "refinement"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("start/", views.run_start, name="start"),
    path("<int:pk>/", views.run_detail, name="detail"),
    path("<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("<int:pk>/promote/", views.run_promote, name="promote"),
    path("<int:pk>/demote/", views.run_demote, name="demote"),
]
