from django.db import migrations


def create_default_template(apps, schema_editor):
    PromptTemplate = apps.get_model("prompting", "PromptTemplate")
    if not PromptTemplate.objects.filter(active=True).exists():
        PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={
            "active": True, "notes": "The default personalised prompt: her record, patients like her, guidance sources.",
        })


class Migration(migrations.Migration):
    dependencies = [("prompting", "0001_initial")]
    operations = [migrations.RunPython(create_default_template, migrations.RunPython.noop)]
