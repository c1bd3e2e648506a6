from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from prompting.knowledge import KnowledgeError, knowledge_document_index, knowledge_load_who
from prompting.models import KnowledgeDocument


class Command(BaseCommand):
    help = "Load the WHO antenatal decision tables (default) or index text/Markdown/PDF files as guidance."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", help="Text, Markdown or PDF files (default: the shipped WHO tables).")
        parser.add_argument("--source", default="")
        parser.add_argument("--licence", default="")

    def handle(self, *args, files, source, licence, **options):
        if not files:
            self.stdout.write(f"Loaded {knowledge_load_who()} WHO antenatal decision rules.")
            return
        from prompting.knowledge import extract_text

        for name in files:
            path = Path(name)
            try:
                text = extract_text(path.name, path.read_bytes())
            except (OSError, KnowledgeError) as exc:
                raise CommandError(f"{name}: {exc}") from None
            document, _ = KnowledgeDocument.objects.update_or_create(
                external_key=f"file:{path.name}"[:120], defaults={"title": path.stem.replace("_", " "), "text": text,
                                                                    "source": source or path.name, "licence": licence})
            self.stdout.write(f"{path.name}: {knowledge_document_index(document=document)} passages")
