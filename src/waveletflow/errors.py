"""Errors a user can cause. The CLI turns them into one ``error: ...`` line and exit code 2."""


class UserInputError(ValueError):
    """Bad input from the user: a wrong size, a missing path, an unknown name, a corrupt file."""


class Diverged(UserInputError):
    """Training diverged: the loss stayed non-finite step after step (a lower learning rate usually trains)."""


class ReportedElsewhere(UserInputError):
    """An error that another process (the first rank of a ``torchrun`` job) reports; this one exits with code 2
    without printing it again."""


class RankError(UserInputError):
    """An error of one rank of a ``torchrun`` job that the other ranks need not share; that rank reports it."""


class RendezvousError(RankError):
    """A rank of a ``torchrun`` job could not join the others (each rank reports its own)."""
