"""Errors a user can cause. The CLI turns them into one ``error: ...`` line and exit code 2."""


class UserInputError(ValueError):
    """Bad input from the user: a wrong size, a missing path, an unknown name, a corrupt file."""
