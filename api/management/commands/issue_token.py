from django.core.management.base import BaseCommand, CommandError

from api.tokens import TokenError, token_issue


class Command(BaseCommand):
    help = (
        "Issue a partner API token for a member's account. The token is printed once, on the last line; "
        "only its digest is kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args, username, name, **options):
        try:
            record, token = token_issue(username=username, name=name)
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Token {record.prefix}… for {username} ({record.user.membership.organisation.slug}); keep it secret, "
            "it is shown only now:"
        )
        self.stdout.write(token)
