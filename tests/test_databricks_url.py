"""databricks_url: every spelling of a Databricks connection becomes the URL databricks-sqlalchemy reads."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from datahub_tokenize_action._config import ConnectionConfig
from datahub_tokenize_action._warehouses.databricks_url import databricks_url
from datahub_tokenize_action._exceptions import ConfigError

TOKEN = "dapi0123456789abcdef0123456789abcdef"
HOST = "adb-1234567890123456.7.azuredatabricks.net"
HTTP_PATH = "/sql/1.0/warehouses/abc123def456"
SEED_JDBC = (
    f"jdbc:databricks://{HOST}:443/default;transportMode=http;ssl=1;"
    f"httpPath={HTTP_PATH};AuthMech=3;UID=token;PWD={TOKEN}"
)


def conn(url: str | None = None, **fields) -> ConnectionConfig:
    return ConnectionConfig(platform="databricks", url=url, **fields)


def connect_args(url: URL) -> dict:
    """What the dialect hands to databricks.sql.connect for this URL (no connection made)."""
    engine = create_engine(url)
    try:
        _, kwargs = engine.dialect.create_connect_args(engine.url)
    finally:
        engine.dispose()
    return kwargs


def config_error(connection: ConnectionConfig, catalog: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        databricks_url(connection, catalog)
    error = info.value
    for shown in (str(error), repr(error)):
        assert TOKEN not in shown
    # Nothing chained that a traceback would print.
    assert error.__cause__ is None
    assert error.__suppress_context__
    return error


# The accepted forms -----------------------------------------------------------------------


def test_sqlalchemy_form_is_read_as_the_dialect_reads_it():
    url = databricks_url(conn(f"databricks://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}"))

    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "databricks", "token", TOKEN, HOST, None, None,
    )
    assert dict(url.query) == {"http_path": HTTP_PATH}
    assert connect_args(url) == {
        "server_hostname": HOST,
        "access_token": TOKEN,
        "http_path": HTTP_PATH,
        "catalog": None,
        "schema": None,
        "use_inline_params": False,
    }


def test_sqlalchemy_form_keeps_catalog_schema_and_dialect_options():
    url = databricks_url(conn(
        f"databricks://token:{TOKEN}@{HOST}:443?http_path={HTTP_PATH}&catalog=main&schema=sales"
        "&enable_multirow_insert_casts=false"
    ))

    assert url.port is None
    assert dict(url.query) == {
        "http_path": HTTP_PATH, "catalog": "main", "schema": "sales",
        "enable_multirow_insert_casts": "false",
    }


def test_sqlalchemy_form_with_percent_encoded_token_is_decoded():
    url = databricks_url(conn(f"databricks://token:a%2Fb%40c@{HOST}?http_path={HTTP_PATH}"))

    assert url.password == "a/b@c"
    assert connect_args(url)["access_token"] == "a/b@c"


def test_older_databricks_connector_scheme_becomes_databricks():
    url = databricks_url(conn(f"databricks+connector://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}"))

    assert url.drivername == "databricks"


def test_seed_jdbc_form_becomes_the_sqlalchemy_url():
    url = databricks_url(conn(SEED_JDBC))

    assert (url.drivername, url.username, url.password, url.host, url.port) == (
        "databricks", "token", TOKEN, HOST, None,
    )
    # The path segment after the host is the JDBC default schema.
    assert dict(url.query) == {"http_path": HTTP_PATH, "schema": "default"}
    args = connect_args(url)
    assert (args["server_hostname"], args["access_token"], args["http_path"]) == (HOST, TOKEN, HTTP_PATH)


def test_jdbc_property_names_are_case_insensitive():
    url = databricks_url(conn(
        f"jdbc:databricks://{HOST}:443/default;TRANSPORTMODE=HTTP;SSL=1;HTTPPATH={HTTP_PATH};"
        f"authmech=3;uid=TOKEN;pwd={TOKEN}"
    ))

    assert (url.host, url.password, url.query["http_path"]) == (HOST, TOKEN, HTTP_PATH)


def test_older_jdbc_spark_prefix_is_accepted():
    url = databricks_url(conn(SEED_JDBC.replace("jdbc:databricks://", "jdbc:spark://")))

    assert (url.host, url.password, url.query["http_path"]) == (HOST, TOKEN, HTTP_PATH)


def test_jdbc_form_without_port_or_schema_is_accepted():
    url = databricks_url(conn(f"jdbc:databricks://{HOST};httpPath={HTTP_PATH};AuthMech=3;UID=token;PWD={TOKEN}"))

    assert url.port is None
    assert dict(url.query) == {"http_path": HTTP_PATH}


def test_jdbc_conn_catalog_and_conn_schema_become_query_keys():
    url = databricks_url(conn(
        f"jdbc:databricks://{HOST}:443;httpPath={HTTP_PATH};AuthMech=3;UID=token;PWD={TOKEN};"
        "ConnCatalog=main;ConnSchema=sales"
    ))

    assert dict(url.query) == {"http_path": HTTP_PATH, "catalog": "main", "schema": "sales"}


def test_jdbc_value_in_braces_may_hold_a_semicolon():
    url = databricks_url(conn(
        f"jdbc:databricks://{HOST}:443/default;httpPath={HTTP_PATH};AuthMech=3;UID=token;PWD={{a;b}}"
    ))

    assert url.password == "a;b"


def test_jdbc_properties_the_connector_has_no_use_for_are_ignored():
    url = databricks_url(conn(SEED_JDBC + ";UserAgentEntry=seed;EnableArrow=0;"))

    assert dict(url.query) == {"http_path": HTTP_PATH, "schema": "default"}


def test_separate_fields_build_the_same_url_as_the_sqlalchemy_form():
    from_fields = databricks_url(conn(host=HOST, http_path=HTTP_PATH, token=TOKEN))
    from_url = databricks_url(conn(f"databricks://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}"))

    assert from_fields == from_url


def test_host_field_may_be_the_workspace_url():
    url = databricks_url(conn(host=f"https://{HOST}/", http_path=HTTP_PATH, token=TOKEN))

    assert url.host == HOST


def test_catalog_argument_sets_the_catalog():
    url = databricks_url(conn(SEED_JDBC), catalog="main")

    assert url.query["catalog"] == "main"
    assert connect_args(url)["catalog"] == "main"


def test_catalog_argument_equal_to_the_urls_catalog_is_accepted_in_any_case():
    url = databricks_url(
        conn(f"databricks://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}&catalog=Main"), catalog="main"
    )

    assert url.query["catalog"] == "Main"


def test_url_string_and_repr_mask_the_token():
    url = databricks_url(conn(SEED_JDBC))

    assert TOKEN not in str(url)
    assert TOKEN not in repr(url)


# Malformed input ---------------------------------------------------------------------------


def test_catalog_argument_different_from_the_urls_catalog_is_refused():
    error = config_error(
        conn(f"databricks://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}&catalog=main"), catalog="sales"
    )

    assert "'main'" in str(error) and "'sales'" in str(error)


def test_catalog_argument_different_from_conn_catalog_is_refused():
    error = config_error(conn(SEED_JDBC + ";ConnCatalog=main"), catalog="sales")

    assert "ConnCatalog" in str(error)


@pytest.mark.parametrize(
    "url, says",
    [
        pytest.param(f"databricks://token:{TOKEN}@{HOST}", "http_path=", id="sqlalchemy-no-http-path"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}?httpPath={HTTP_PATH}", "spells it `http_path`",
                     id="sqlalchemy-jdbc-spelling-of-http-path"),
        pytest.param(f"databricks://token@{HOST}?http_path={HTTP_PATH}", "no token", id="sqlalchemy-no-token"),
        pytest.param(f"databricks://{TOKEN}@{HOST}?http_path={HTTP_PATH}", "no token",
                     id="sqlalchemy-token-as-user-name"),
        pytest.param(f"databricks://someone:{TOKEN}@{HOST}?http_path={HTTP_PATH}", "must be `token`",
                     id="sqlalchemy-user-other-than-token"),
        pytest.param(f"databricks://token:{TOKEN}@?http_path={HTTP_PATH}", "no host", id="sqlalchemy-no-host"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}:8443?http_path={HTTP_PATH}", "8443",
                     id="sqlalchemy-port-the-dialect-ignores"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}:https?http_path={HTTP_PATH}", "cannot be parsed",
                     id="sqlalchemy-unparseable"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}/main?http_path={HTTP_PATH}", "?http_path=",
                     id="sqlalchemy-path-after-host"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}?http_path={HTTP_PATH}&catlog=main", "`catlog`",
                     id="sqlalchemy-unknown-query-key"),
        pytest.param(f"databricks://token:{TOKEN}@{HOST}?http_path=a&http_path=b", "more than once",
                     id="sqlalchemy-repeated-query-key"),
        pytest.param(f"jdbc:databricks://{HOST}:443/default;AuthMech=3;UID=token;PWD={TOKEN}", "httpPath=",
                     id="jdbc-no-http-path"),
        pytest.param(f"jdbc:databricks://{HOST}:443/default;httpPath={HTTP_PATH};AuthMech=3;UID=token",
                     "no token", id="jdbc-no-token"),
        pytest.param(f"jdbc:databricks://:443/default;httpPath={HTTP_PATH};AuthMech=3;UID=token;PWD={TOKEN}",
                     "no host", id="jdbc-no-host"),
        pytest.param(SEED_JDBC.replace("AuthMech=3", "AuthMech=11"), "AuthMech=11", id="jdbc-oauth-authmech"),
        pytest.param(SEED_JDBC.replace("UID=token", "UID=someone@example.com"), "`UID` other than `token`",
                     id="jdbc-uid-other-than-token"),
        pytest.param(SEED_JDBC.replace(f"PWD={TOKEN}", TOKEN), "not `name=value`",
                     id="jdbc-token-without-pwd-name"),
        pytest.param(SEED_JDBC.replace("ssl=1", "ssl=0"), "ssl=1", id="jdbc-ssl-off"),
        pytest.param(SEED_JDBC.replace("transportMode=http", "transportMode=binary"), "transportMode=http",
                     id="jdbc-binary-transport"),
        pytest.param(SEED_JDBC.replace(":443", ":10000"), "10000", id="jdbc-port-other-than-443"),
        pytest.param(SEED_JDBC + ";pwd=other", "give each property once", id="jdbc-conflicting-repeat"),
        pytest.param(SEED_JDBC + ";ConnSchema=sales", "keep one", id="jdbc-two-different-schemas"),
        pytest.param(f"jdbc:databricks://token:{TOKEN}@{HOST}:443/default;httpPath={HTTP_PATH}",
                     "UID=token;PWD=<token>", id="jdbc-credentials-before-host"),
        pytest.param(f"jdbc:mysql://{HOST}/db;PWD={TOKEN}", "not a Databricks URL", id="other-jdbc-driver"),
        pytest.param(f"postgresql://token:{TOKEN}@{HOST}/db", "`postgresql://`", id="postgres-url"),
        pytest.param(TOKEN, "not a URL", id="bare-token"),
        pytest.param(f"{TOKEN}://{HOST}", "not a Databricks URL", id="token-as-scheme"),
    ],
)
def test_malformed_url_names_the_problem_and_never_the_token(url, says):
    error = config_error(conn(url))

    assert says in str(error)
    assert str(error).startswith("databricks connection: ")


@pytest.mark.parametrize(
    "fields, missing",
    [
        pytest.param({"http_path": HTTP_PATH, "token": TOKEN, "host": "  "}, "`host`", id="blank-host"),
        pytest.param({"host": HOST, "token": TOKEN}, "`http_path`", id="no-http-path"),
        pytest.param({"host": HOST, "http_path": HTTP_PATH}, "`token`", id="no-token"),
        pytest.param({"host": HOST, "http_path": HTTP_PATH, "token": ""}, "`token`", id="empty-token"),
    ],
)
def test_separate_fields_name_the_missing_one(fields, missing):
    error = config_error(conn(**fields))

    assert f"{missing} is missing" in str(error)


def test_host_field_with_a_path_is_refused():
    error = config_error(conn(host=f"{HOST}/sql/1.0", http_path=HTTP_PATH, token=TOKEN))

    assert "`host` is not a host name" in str(error)


def test_url_together_with_separate_fields_is_refused():
    error = config_error(conn(SEED_JDBC, token=TOKEN))

    assert "keep one" in str(error)


def test_connection_of_another_platform_is_refused():
    with pytest.raises(ConfigError, match="not 'databricks'"):
        databricks_url(ConnectionConfig(platform="postgres", url=f"postgresql://u:{TOKEN}@h/db"))


def test_error_names_the_platform_instance():
    connection = ConnectionConfig(
        platform="databricks", platform_instance="prod", url=f"databricks://token:{TOKEN}@{HOST}"
    )

    error = config_error(connection)

    assert "platform_instance 'prod'" in str(error)


def test_empty_catalog_argument_is_refused():
    config_error(conn(SEED_JDBC), catalog=" ")


def test_error_leaves_no_exception_context_behind():
    error = config_error(conn(f"databricks://token:{TOKEN}@{HOST}:https?http_path={HTTP_PATH}"))

    assert error.__context__ is None
