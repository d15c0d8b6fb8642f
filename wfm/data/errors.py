"""The one exception type the data engine raises for bad input."""


class DataError(ValueError):
    """Bad or inconsistent data. The message names the file and the problem in one line."""
