import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.models import Organisation
from prompting.peer_models import peer_model_create, peer_model_train
from prompting.prompts import PromptError


class Command(BaseCommand):
    help = "Train the peer model (Surprise KNNBaseline + SVD) for an organisation and store every patient's peers."

    def add_arguments(self, parser):
        parser.add_argument("--org", default=settings.PMLM_DEMO_ORGANISATION, help="Organisation slug.")
        parser.add_argument("--json", action="store_true", help="Print the metrics as JSON.")

    def handle(self, *args, org, json: bool, **options):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation '{org}'.")
        peer_model = peer_model_create(organisation=organisation)
        progress = None if json else (lambda percent, message: self.stdout.write(f"[{percent:3d}%] {message}"))
        try:
            peer_model = peer_model_train(peer_model_id=peer_model.pk, on_progress=progress)
        except PromptError as exc:
            raise CommandError(str(exc)) from None
        report = {
            "peer_model": peer_model.version,
            "neighbour_method": peer_model.neighbour_method,
            "training_seconds": peer_model.training_seconds,
            "metrics": peer_model.metrics,
        }
        if json:
            self.stdout.write(_json(report))
            return
        m = peer_model.metrics
        self.stdout.write(
            f"Peer model v{peer_model.version}: {m['ratings']} ratings, {m['patients_with_ratings']} patients "
            f"with ratings, {m['cold_start_patients']} cold-start, neighbours by {peer_model.neighbour_method}, "
            f"{peer_model.training_seconds} s"
        )
        self.stdout.write(f"{'held-out':<14}{'RMSE':>8}{'MAE':>8}{'P@5':>8}{'cover':>8}")
        for name in ("svd", "knn_baseline", "item_mean", "global_mean"):
            if name in m:
                self.stdout.write(
                    f"{name:<14}{m[name]['rmse']:>8.3f}{m[name]['mae']:>8.3f}{m[name]['precision_at_5']:>8.3f}{m[name]['coverage']:>8.2f}"
                )


def _json(data) -> str:
    return jsonlib.dumps(data, indent=2, default=str)
