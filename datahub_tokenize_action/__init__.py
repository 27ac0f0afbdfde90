"""datahub-tokenize-action: tokenize PII columns when a DataHub steward tags them."""

from ._config import ConnectionConfig, RunOptions, TokenizeConfig, TokenizerConfig, load_config, parse_config
from ._exceptions import *  # noqa: F401,F403
from ._exceptions import __all__ as _exception_names
from ._request import TokenizeRequest
from ._result import TokenizeResult
from ._routing import TableRef, route
from ._tokenizers import HmacTokenizer, PocTokenizer, Tokenizer, available_tokenizers, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ConnectionConfig",
    "HmacTokenizer",
    "PocTokenizer",
    "RunOptions",
    "TableRef",
    "TokenizeConfig",
    "TokenizeRequest",
    "TokenizeResult",
    "Tokenizer",
    "TokenizerConfig",
    "available_tokenizers",
    "load_config",
    "load_tokenizer",
    "parse_config",
    "route",
    *_exception_names,
]
