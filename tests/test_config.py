"""Config validation and URN routing (pure)."""

from __future__ import annotations

import pytest

from datahub_tokenize_action import (
    ConfigError,
    InvalidDatasetError,
    NoConnectionError,
    TokenizeConfig,
    load_config,
    parse_config,
    route,
)

from .harness import HMAC_KEY, install_tokenizer

PG = {"platform": "postgres", "url": "postgresql+psycopg2://u:p@h:5432"}
DBX = {"platform": "databricks", "url": "databricks://token:t@host?http_path=/sql/1.0/warehouses/x"}
TOKENIZER = {"type": "hmac", "key": HMAC_KEY}


def test_unknown_keys_are_rejected_with_their_name():
    with pytest.raises(ConfigError, match="batch_sise"):
        parse_config({"connections": [PG], "tokenizer": TOKENIZER, "run": {"batch_sise": 5}})


def test_every_config_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    walk(TokenizeConfig)


def test_secrets_are_masked_in_the_config_repr():
    config = parse_config({"connections": [PG], "tokenizer": TOKENIZER})
    text = repr(config) + str(config.model_dump())
    assert "u:p@" not in text and HMAC_KEY not in text


def test_plugin_options_reach_the_plugin_as_written_but_stay_out_of_reprs():
    from datahub_tokenize_action import TokenizerConfig

    config = TokenizerConfig.model_validate({"type": "vault", "vault_token": "s3cr3t-vault-token", "mount": "pii"})
    assert config.options() == {"vault_token": "s3cr3t-vault-token", "mount": "pii"}  # a plain `str` field accepts it
    assert "s3cr3t-vault-token" not in repr(config) + str(config.model_dump())


def test_a_plugin_rejecting_its_options_does_not_echo_them(monkeypatch):
    from pydantic import BaseModel

    from datahub_tokenize_action import PocTokenizer, load_tokenizer

    class Picky(PocTokenizer):
        class Config(BaseModel):  # a plain model, which would print its inputs
            vault_token: int

    install_tokenizer(monkeypatch, "picky", Picky)
    with pytest.raises(ConfigError, match="vault_token: Input should be a valid integer") as err:
        load_tokenizer("picky", {"vault_token": "s3cr3t-vault-token"})
    assert "s3cr3t" not in str(err.value)


def test_a_connection_needs_a_way_to_connect():
    with pytest.raises(ConfigError, match="needs `url`"):
        parse_config({"connections": [{"platform": "postgres"}], "tokenizer": TOKENIZER})


@pytest.mark.parametrize(
    "urn, platform, instance, parts",
    [
        ("urn:li:dataset:(urn:li:dataPlatform:postgres,appdb.public.customers,PROD)", "postgres", None,
         ("appdb", "public", "customers")),
        ("urn:li:dataset:(urn:li:dataPlatform:postgres,eu.appdb.public.customers,PROD)", "postgres", "eu",
         ("appdb", "public", "customers")),
        ("urn:li:dataset:(urn:li:dataPlatform:databricks,main.sales.orders,PROD)", "databricks", None,
         ("main", "sales", "orders")),
        ("urn:li:dataset:(urn:li:dataPlatform:databricks,ws1.hive_metastore.default.t,DEV)", "databricks", "ws1",
         ("hive_metastore", "default", "t")),
    ],
)
def test_urns_route_to_the_connection_of_their_platform_and_instance(urn, platform, instance, parts):
    connections = parse_config({
        "connections": [PG, {**PG, "platform_instance": "eu"}, DBX, {**DBX, "platform_instance": "ws1"}],
        "tokenizer": TOKENIZER,
    }).connections
    connection, ref = route(urn, connections)
    assert (connection.platform, connection.platform_instance) == (platform, instance)
    assert (ref.database, ref.schema, ref.table) == parts


def test_an_unconfigured_platform_says_which_connection_to_add():
    connections = parse_config({"connections": [PG], "tokenizer": TOKENIZER}).connections
    with pytest.raises(NoConnectionError, match="platform: snowflake"):
        route("urn:li:dataset:(urn:li:dataPlatform:snowflake,db.s.t,PROD)", connections)


def test_a_name_without_three_parts_is_refused():
    connections = parse_config({"connections": [PG], "tokenizer": TOKENIZER}).connections
    with pytest.raises(NoConnectionError, match="<database>.<schema>.<table>"):
        route("urn:li:dataset:(urn:li:dataPlatform:postgres,public.customers,PROD)", connections)


def test_a_malformed_urn_is_refused():
    with pytest.raises(InvalidDatasetError, match="not a dataset URN"):
        route("urn:li:corpuser:bob", [])


def test_the_yaml_is_read_with_env_expansion_like_datahub_actions(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(
        "action:\n  type: tokenize\n  config:\n    connections:\n"
        "      - platform: postgres\n        url: postgresql+psycopg2://u:${PGPW}@${PGHOST:-localhost}:5432\n"
        "    tokenizer:\n      type: hmac\n      key: ${KEY}\n"
    )
    monkeypatch.setenv("PGPW", "pw")
    monkeypatch.setenv("KEY", HMAC_KEY)
    config = load_config(path)
    assert config.connections[0].url.get_secret_value() == "postgresql+psycopg2://u:pw@localhost:5432"
    monkeypatch.delenv("KEY")
    with pytest.raises(ConfigError, match="environment variable KEY is not set"):
        load_config(path)


def test_a_yaml_without_an_action_section_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("source: {}\n")
    with pytest.raises(ConfigError, match="no `action.config`"):
        load_config(path)


def _one_line_error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    message = str(info.value)
    assert "\n" not in message and "errors.pydantic.dev" not in message
    return message


def test_a_misspelt_key_names_its_path_and_the_key_it_probably_meant():
    message = _one_line_error({"connections": [PG], "tokenizer": TOKENIZER, "run": {"batch_sise": 5}})
    assert message == "action.config.run.batch_sise: unknown key; did you mean batch_size?"


def test_an_unknown_key_with_no_close_match_lists_the_valid_keys():
    message = _one_line_error({"connections": [{**PG, "colour": "red"}], "tokenizer": TOKENIZER})
    assert message.startswith("action.config.connections[0].colour: unknown key; valid keys: ")
    assert "platform, platform_instance, url" in message


def test_a_missing_required_key_names_its_path_and_what_it_holds():
    message = _one_line_error({"tokenizer": TOKENIZER})
    assert message.startswith("action.config.connections: required key is missing (Warehouse connections")


def test_a_bad_value_names_its_path_and_what_is_expected():
    message = _one_line_error({"connections": [PG], "tokenizer": TOKENIZER, "run": {"batch_size": "many"}})
    assert message.startswith("action.config.run.batch_size: expected a valid integer")


def test_several_problems_are_joined_on_one_line():
    message = _one_line_error({"connections": [PG], "tokenizer": TOKENIZER, "write_back": {"tag": True},
                               "trigger_tags": "x"})
    assert message == ("action.config.write_back.tag: unknown key; did you mean tags?; "
                       "action.config.trigger_tags: unknown key; did you mean trigger_tag?")


def test_a_low_entropy_hmac_key_is_refused_at_the_tokenizer_key_with_what_to_do():
    message = _one_line_error({"connections": [PG], "tokenizer": {"type": "hmac", "key": "x" * 16}})
    assert message.startswith("action.config.tokenizer: tokenizer 'hmac': key: ")
    assert "tokenizer.key has too little entropy" in message and "openssl rand -base64 32" in message
    assert "x" * 16 not in message


def test_retired_key_ids_are_an_hmac_option_and_checked():
    config = parse_config({"connections": [PG], "tokenizer": {**TOKENIZER, "key_id": "k2",
                                                               "retired_key_ids": ["k1", "k2025"]}})
    assert config.build_tokenizer().key_ids == ("k2", "k1", "k2025")
    message = _one_line_error({"connections": [PG], "tokenizer": {**TOKENIZER, "key_id": "k2",
                                                                  "retired_key_ids": ["k2"]}})
    assert "retired_key_ids lists the current key id 'k2'" in message


def test_a_tokenizer_that_refuses_its_options_is_reported_at_the_tokenizer_key():
    message = _one_line_error({"connections": [PG], "tokenizer": {"type": "hmac", "key": "short-Secret"}})
    assert message.startswith("action.config.tokenizer: tokenizer 'hmac': key: the hmac key is shorter")
    assert "Value error" not in message and "short-Secret" not in message


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("action:\n  type: tokenize\n  config:\n    connections:\n      - platform: postgres\n"
                    "        url: a: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}:6:15: YAML syntax error: mapping values are not allowed here; fix the file")


def test_a_config_file_error_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("action:\n  config:\n    connections: []\n    tokenizer: {type: hmac, key: 0123456789abcdefgh}\n"
                    "    runn: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: action.config.runn: unknown key; did you mean run?"
