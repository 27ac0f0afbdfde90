"""``mask_url``: a connection URL with its secrets hidden, for logs and errors."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import URL

__all__ = ["mask_url"]

#: ``sslpassword``, a connector's ``access_token``...).
_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)


def mask_url(url: URL | str) -> str:
    """The URL with its password, and query parameters that look secret, replaced by
    ``***``; safe for logs and errors."""
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except sa.exc.ArgumentError:
            return "<unparseable url>"
    hidden = {k: "***" for k in url.query if _SECRET_QUERY_KEY.search(k)}
    return url.update_query_dict(hidden).render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")

