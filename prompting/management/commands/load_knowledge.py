from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from prompting.knowledge import KnowledgeError, knowledge_document_save, knowledge_load_who
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
        for name in files:
            path = Path(name)
            key = f"file:{path.name}"[:120]
            document = KnowledgeDocument.objects.filter(external_key=key).first() or KnowledgeDocument(external_key=key)
            document.title, document.source, document.licence = (
                path.stem.replace("_", " "),
                source or path.name,
                licence,
            )
            try:
                passages = knowledge_document_save(
                    document=document, file_name=path.name, data=path.read_bytes(), index_now=True
                )
            except (OSError, KnowledgeError) as exc:
                raise CommandError(f"{name}: {exc}") from None
            self.stdout.write(f"{path.name}: {passages} passages")
