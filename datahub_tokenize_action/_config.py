"""The YAML contract: ``action.config`` of the pipeline file, shared by the action and the CLI."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import expandvars
from pydantic import Field, SecretStr, ValidationError, model_validator

from datahub.configuration.common import ConfigModel, ConfigurationError
from datahub.configuration.config_loader import load_config_file

from ._exceptions import ConfigError, TokenizeError
from ._tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "ConnectionConfig",
    "RunOptions",
    "TokenizeConfig",
    "TokenizerConfig",
    "load_config",
    "parse_config",
]


class ConnectionConfig(ConfigModel):
    """How to reach one warehouse. Datasets are routed here by their URN's platform (and instance)."""

    platform: str = Field(
        description="The DataHub platform of the datasets this connection serves, as in the "
        "dataset URN: `postgres` or `databricks`.",
    )
    platform_instance: str | None = Field(
        default=None,
        description="The DataHub platform instance this connection serves. A dataset URN whose "
        "name starts with `<platform_instance>.` is routed here; leave unset for URNs without one.",
    )
    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. `postgresql+psycopg2://tokenize:${PG_PASSWORD}@host:5432` "
        "(without a database: the URN's is used; if it names one, it must equal the URN's) or "
        "`databricks://token:${DATABRICKS_TOKEN}@<host>?http_path=<path>`. Databricks also "
        "accepts the JDBC form `jdbc:databricks://<host>:443/default;httpPath=<path>;...;PWD=<token>`. "
        "Treated as a secret: logs show it with the password masked.",
    )
    host: str | None = Field(
        default=None,
        description="Databricks only, instead of `url`: the workspace host name.",
    )
    http_path: str | None = Field(
        default=None,
        description="Databricks only, instead of `url`: the SQL warehouse's HTTP path.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Databricks only, instead of `url`: a personal access token or service "
        "principal token.",
    )
    engine_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for SQLAlchemy's `create_engine` (e.g. `connect_args`).",
    )
    key_columns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Columns that identify a row, per table (`<schema>.<table>` or "
        "`<database>.<schema>.<table>`), for tables without a primary key. Databricks enforces "
        "no keys, so its tables need an entry here unless Unity Catalog declares a primary key.",
    )

    @model_validator(mode="after")
    def _has_a_way_to_connect(self) -> "ConnectionConfig":
        if self.url is None and self.host is None:
            raise ValueError(
                f"connection for platform {self.platform!r} needs `url` (or, for databricks, "
                "`host`, `http_path` and `token`)"
            )
        return self


class TokenizerConfig(ConfigModel):
    """Which tokenizer plugin makes the tokens. Other keys are the plugin's own options."""

    model_config = {"extra": "allow"}

    type: str = Field(
        description="The tokenizer plugin: `hmac` (keyed HMAC-SHA256, the one to use), `poc` "
        "(the seeds' base64 encoding, no protection), or one installed by another package.",
    )

    @model_validator(mode="after")
    def _hide_secret_options(self) -> "TokenizerConfig":
        # Plugin options arrive untyped; keep secret-looking ones out of reprs and dumps.
        extra = self.__pydantic_extra__ or {}
        for name, value in extra.items():
            if isinstance(value, str) and _looks_secret(name):
                extra[name] = SecretStr(value)
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


def _looks_secret(name: str) -> bool:
    return name in {"key", "token", "password", "secret"} or name.endswith(("_key", "_token", "_password", "_secret"))


class RunOptions(ConfigModel):
    """How the update loop runs."""

    batch_size: int = Field(
        default=50_000, ge=1,
        description="Rows read, tokenized and written per batch (keyset pages ordered by the key).",
    )
    commit_every_batch: bool = Field(
        default=False,
        description="False (default): the whole run is one transaction on warehouses that have "
        "them: all or nothing. True: commit after every batch, for very large tables; a run "
        "stopped half way is finished by running it again (values already tokens are skipped).",
    )
    lock_timeout_s: float = Field(
        default=60.0, gt=0,
        description="How long a run waits for another run on the same table to finish before "
        "failing (Postgres advisory lock).",
    )
    postgres_work_mem: str = Field(
        default="256MB", pattern=r"^[0-9]+(kB|MB|GB)$",
        description="Postgres only: `work_mem` for the run's transaction, so the join that applies "
        "the staged tokens runs in memory instead of spilling to disk (one hash table per run).",
    )
    progress_interval_s: float = Field(
        default=5.0, gt=0,
        description="Seconds between progress log lines on long runs.",
    )


class TokenizeConfig(ConfigModel):
    """``action.config`` of `configs/tokenize.yaml`."""

    connections: list[ConnectionConfig] = Field(
        description="Warehouse connections; each dataset goes to the one matching its URN's "
        "platform and platform instance.",
    )
    tokenizer: TokenizerConfig = Field(description="The token format.")
    run: RunOptions = Field(default_factory=RunOptions, description="Options of the update loop.")

    @model_validator(mode="after")
    def _tokenizer_builds(self) -> "TokenizeConfig":
        # Fails at load time (with the plugin's own message) rather than on the first event.
        self.build_tokenizer()
        return self

    def build_tokenizer(self) -> Tokenizer:
        try:
            return load_tokenizer(self.tokenizer.type, self.tokenizer.options())
        except TokenizeError as e:
            raise ValueError(str(e)) from None


def parse_config(config_dict: dict[str, Any] | None) -> TokenizeConfig:
    """Validate ``action.config``; raise ConfigError with pydantic's message (inputs hidden)."""
    try:
        return TokenizeConfig.model_validate(config_dict or {})
    except ValidationError as e:
        raise ConfigError(f"invalid tokenize config: {e}") from None


def load_config(path: str | pathlib.Path) -> TokenizeConfig:
    """Read ``action.config`` from a pipeline YAML, expanding ``${VAR}`` and ``${VAR:-default}``
    the way ``datahub actions -c`` does."""
    try:
        whole = load_config_file(path, allow_remote=False)
    except expandvars.UnboundVariable as e:
        name = re.search(r"[A-Za-z_][A-Za-z0-9_]*", str(e))
        raise ConfigError(
            f"{path}: environment variable {name.group(0) if name else str(e)} is not set; export it or "
            "give a default with ${VAR:-default}"
        ) from None
    except (ConfigurationError, OSError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    action = whole.get("action") if isinstance(whole, dict) else None
    if not isinstance(action, dict) or not isinstance(action.get("config"), dict):
        raise ConfigError(f"{path}: no `action.config` section; see configs/tokenize.yaml")
    return parse_config(action["config"])
