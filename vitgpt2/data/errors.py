"""What goes wrong with a user's data, as messages that name the file, column or row and the fix."""

from ..errors import UserError
from ..remote_code.images import ImageLoadError


class DataSourceError(UserError, ValueError):
    """The data source cannot be read as asked."""


class BadImageError(UserError, ImageLoadError):
    """An image that cannot be used, found before training starts."""
