import time

from django.core.management.base import BaseCommand, CommandError

from patients.demo.seed import demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo organisation, users and cohort (Synthea patients plus generated lifestyle, ratings and "
        "recommendations)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7, help="Seed for the generated data (default 7).")
        parser.add_argument("--limit", type=int, help="Import only the first N shipped Synthea bundles.")
        parser.add_argument(
            "--password", help="Password for demo-clinician, demo-curator and demo-partner (default: generated)."
        )
        parser.add_argument(
            "--synthetic-patients", type=int, default=0, help="Also add N generated patients (benchmarks)."
        )
        parser.add_argument("--no-knowledge", action="store_true", help="Do not load the WHO demo knowledge base.")
        parser.add_argument(
            "--no-time-shift",
            action="store_true",
            help="Keep Synthea's original dates instead of moving the cohort to the present.",
        )

    def handle(self, *args, seed, limit, password, synthetic_patients, no_time_shift, no_knowledge, **options):
        if limit is not None and limit < 0 or synthetic_patients < 0:
            raise CommandError("--limit and --synthetic-patients must not be negative.")
        started = time.monotonic()
        summary = demo_seed(
            seed=seed,
            limit=limit,
            password=password,
            synthetic_patients=synthetic_patients,
            time_shift=not no_time_shift,
            knowledge=not no_knowledge,
            progress=lambda line: self.stdout.write(line),
        )
        for line in summary.lines():
            self.stdout.write(line)
        self.stdout.write(f"Done in {time.monotonic() - started:.1f} s.")
        if summary.bundles_rejected:
            raise CommandError(f"{len(summary.bundles_rejected)} demo bundle(s) were rejected.")
