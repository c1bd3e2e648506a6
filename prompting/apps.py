from django.apps import AppConfig


class PromptingConfig(AppConfig):
    name = "prompting"
    verbose_name = "Personalised prompts and guidance"
