"""Settings every organisation shares become site administrators' to change: the permission that
marks them, and curators' groups lose the right to add, change or delete those settings."""

from django.db import migrations

from patients.roles import site_only_permissions


def curators_only_look_at_site_settings(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="Curators"):
        group.permissions.remove(*site_only_permissions(Permission))


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("patients", "0003_alter_importjob_status"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="organisation",
            options={"ordering": ["name"],
                     "permissions": [("manage_site_settings", "Can change settings shared by every organisation")]},
        ),
        migrations.RunPython(curators_only_look_at_site_settings, migrations.RunPython.noop),
    ]
