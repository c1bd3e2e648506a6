"""The errors the consultation's services raise, in a module of their own so that the modules that
raise them and those that catch them import no one another."""


class GuidanceError(ValueError):
    pass


class GuidanceBusy(GuidanceError):
    """Too much guidance is already waiting for this account or organisation: try again later (API: 429)."""

    retry_after = 30  # seconds: about one guidance answer


class RefinementError(ValueError):
    """A run that cannot start or go on, with a message for the curator."""


class PromptError(ValueError):
    """A request for a prompt that cannot be honoured, with a message for the person asking."""
