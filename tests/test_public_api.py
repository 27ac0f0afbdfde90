"""The package's public names: a change here is a change of the public API."""

import datahub_tokenize_action

EXPECTED = {
    "ColumnNotFoundError", "ColumnSelection", "CommitOutcomeUnknownError", "ColumnSelectionConfig", "ConfigError", "ConnectionConfig",
    "DataHubError", "DatabaseMismatchError", "HmacTokenizer", "InsufficientPrivilegeError", "InvalidDatasetError", "InvalidTargetError", "LockTimeoutError",
    "NoColumnsError", "NoConnectionError", "NoKeyError", "NotDeltaTableError", "Outcome", "PocTokenizer",
    "PushdownUnavailableError",
    "RunOptions", "TableNotFoundError", "TableRef", "TokenRewrittenError", "TokenTooLongError", "TokenizeAction", "TokenizeConfig",
    "TokenizeError", "TokenizeRequest", "TokenizeResult", "Tokenizer", "TokenizerConfig", "TokenizerContractError", "TokenizerError", "UnknownTokenizerError",
    "UnsupportedColumnTypeError", "UnsupportedTableError", "WarehouseUnavailableError", "WarehouseWriteError", "WriteBackConfig",
    "available_tokenizers", "load_config", "load_pipeline_file", "load_tokenizer", "parse_config", "parse_event",
    "route", "run_request", "select_columns", "tokenize_dataset",
}


def test_the_public_names_are_exactly_the_documented_ones():
    assert set(datahub_tokenize_action.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(datahub_tokenize_action, name) is not None


def test_every_error_is_a_tokenize_error_that_says_whether_a_retry_can_help():
    for name in EXPECTED:
        obj = getattr(datahub_tokenize_action, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, datahub_tokenize_action.TokenizeError)
            assert isinstance(obj.permanent, bool)
