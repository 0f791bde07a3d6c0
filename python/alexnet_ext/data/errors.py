"""The one exception type of :mod:`alexnet_ext.data` for data that cannot be used."""


class DatasetError(ValueError):
    """A path is not a dataset, or a dataset is malformed (missing files, empty class folder...).

    The message says what was looked for and what was found.
    """
