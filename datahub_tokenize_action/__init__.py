"""datahub-tokenize-action: tokenize PII columns when a DataHub steward tags them."""

from ._action import TokenizeAction
from ._columns import ColumnSelection, select_columns
from ._config import (
    ColumnSelectionConfig,
    ConnectionConfig,
    RunOptions,
    TokenizeConfig,
    TokenizerConfig,
    WriteBackConfig,
    load_config,
    load_pipeline_file,
    parse_config,
)
from ._events import parse_event
from ._exceptions import (
    ColumnNotFoundError,
    ConfigError,
    DataHubError,
    DatabaseMismatchError,
    InsufficientPrivilegeError,
    InvalidDatasetError,
    InvalidTargetError,
    LockTimeoutError,
    NoColumnsError,
    NoConnectionError,
    NoKeyError,
    NotDeltaTableError,
    TableNotFoundError,
    TokenRewrittenError,
    TokenTooLongError,
    TokenizeError,
    TokenizerContractError,
    TokenizerError,
    UnknownTokenizerError,
    UnsupportedColumnTypeError,
    UnsupportedTableError,
    WarehouseUnavailableError,
    WarehouseWriteError,
)
from ._request import TokenizeRequest
from ._result import TokenizeResult
from ._routing import TableRef, route
from ._runner import Outcome, run_request, tokenize_dataset
from ._tokenizers import HmacTokenizer, PocTokenizer, Tokenizer, available_tokenizers, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ColumnSelection",
    "ColumnSelectionConfig",
    "ConnectionConfig",
    "Outcome",
    "TokenizeAction",
    "WriteBackConfig",
    "load_pipeline_file",
    "parse_event",
    "run_request",
    "select_columns",
    "tokenize_dataset",
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
    "ColumnNotFoundError",
    "ConfigError",
    "DataHubError",
    "DatabaseMismatchError",
    "InsufficientPrivilegeError",
    "InvalidDatasetError",
    "InvalidTargetError",
    "LockTimeoutError",
    "NoColumnsError",
    "NoConnectionError",
    "NoKeyError",
    "NotDeltaTableError",
    "TableNotFoundError",
    "TokenRewrittenError",
    "TokenTooLongError",
    "TokenizeError",
    "TokenizerContractError",
    "TokenizerError",
    "UnknownTokenizerError",
    "UnsupportedColumnTypeError",
    "UnsupportedTableError",
    "WarehouseUnavailableError",
    "WarehouseWriteError",
]
