from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('prompting', '0006_evaluation_runs'),
    ]

    operations = [
        migrations.AddField(
            model_name='guidancerequest',
            name='unsupported_claims',
            field=models.JSONField(blank=True, default=list, help_text='Sentences that assert about her what her record does not support: [{sentence, start, end, reason, kinds}].'),
        ),
    ]
