"""The YAML contract: ``action.config`` of the pipeline file, shared by the action and the CLI."""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import re
from typing import Any, Literal, get_args

import expandvars
import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from datahub.configuration.common import ConfigModel, ConfigurationError
from datahub.configuration.config_loader import load_config_file
from datahub.emitter.mce_builder import make_tag_urn, make_term_urn

from ._exceptions import ConfigError, TokenizeError, first_line
from ._tokenizers import Tokenizer, load_tokenizer

__all__ = [
    "ColumnSelectionConfig",
    "ConnectionConfig",
    "PipelineFile",
    "RunOptions",
    "TokenizeConfig",
    "TokenizerConfig",
    "WriteBackConfig",
    "load_config",
    "load_pipeline_file",
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
    password: SecretStr | None = Field(
        default=None,
        description="Postgres: the password, given apart from `url` so that any character works "
        "as it is (inside `url`, `@ / : % ?` must be percent-encoded). Overrides a password in `url`.",
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
    secret_scope: str | None = Field(
        default=None,
        description="Databricks only, for pushdown (`run.pushdown`): the secret scope holding "
        "the tokenizer's key, read in SQL by `secret(secret_scope, secret_key)` so the key never "
        "appears in statement text or query history. Without it, Databricks runs use the client loop.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Databricks only, with `secret_scope`: the key of the secret whose value is "
        "the tokenizer's `key`, byte for byte (a run checks it before writing).",
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

    @model_validator(mode="after")
    def _secret_names_both(self) -> "ConnectionConfig":
        if (self.secret_scope is None) != (self.secret_key is None):
            raise ValueError(
                f"connection for platform {self.platform!r}: `secret_scope` and `secret_key` go "
                "together (the Databricks secret holding the tokenizer's key); set both or neither"
            )
        if self.secret_scope is not None and self.platform != "databricks":
            raise ValueError(
                f"connection for platform {self.platform!r}: `secret_scope`/`secret_key` are for "
                "databricks only (Postgres pushdown hands the key over in the session); remove them"
            )
        return self

    @model_validator(mode="after")
    def _url_names_one_host(self) -> "ConnectionConfig":
        # SQLAlchemy ends the user name and password at the first `@`: a raw `@` in a password
        # turns the rest of it into host, database or query, which errors would then show.
        # Refuse it without showing the URL.
        raw = self.url.get_secret_value() if self.url is not None else ""
        if "://" in raw and not raw.startswith("jdbc:"):
            if raw.split("://", 1)[1].count("@") > 1:
                raise ValueError(
                    f"the `url` of the {self.platform!r} connection has more than one '@': its user "
                    "name or password holds a reserved character. Give the password as `password:` "
                    "(any character works there) or percent-encode it in the URL (@ is %40)"
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
        """The plugin's options as written in the YAML (secrets unwrapped: the plugin's own
        config model decides how to hold them)."""
        return {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in (self.__pydantic_extra__ or {}).items()
        }


def _looks_secret(name: str) -> bool:
    return name in {"key", "token", "password", "secret"} or name.endswith(("_key", "_token", "_password", "_secret"))


class RunOptions(ConfigModel):
    """How the update loop runs."""

    batch_size: int = Field(
        default=20_000, ge=1,
        description="Rows read, tokenized and written per batch (keyset pages ordered by the key).",
    )
    commit_every_batch: bool = Field(
        default=False,
        description="False (default): the whole run is one transaction on warehouses that have "
        "them: all or nothing, and rows it updated stay locked until the end. True: commit after "
        "every batch, for very large tables or tables with live writes (a row stays locked for one "
        "batch); a run stopped half way is finished by running it again (values already tokens "
        "are skipped).",
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
    pushdown: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Where tokens are computed. `never`: the client loop (rows are read, "
        "tokenized in Python and written back in batches). `always`: one UPDATE computing each "
        "token in the warehouse (the tokenizer's SQL form: hmac v2), all or nothing; a run fails "
        "before writing when it cannot (another tokenizer, Databricks without `secret_scope`, a "
        "Postgres table with triggers). `auto` (default): pushdown where it can run and measured "
        "faster: Databricks with `secret_scope` set; the loop on Postgres, where the benchmark "
        "found one UPDATE no faster (README, Pushdown). The key never appears in statement text.",
    )

    purge: bool = Field(
        default=False,
        description="After a run that changed rows, remove the old values the warehouse still "
        "keeps outside the table's current rows. Postgres: `VACUUM` of the table (dead row versions; "
        "WAL, replicas and backups keep theirs). Databricks: `VACUUM <table> RETAIN "
        "<purge_retain_hours> HOURS` (previous Delta versions, so time travel to before the run "
        "ends). A purge that fails leaves the run SUCCESS and says what remains. See the README, "
        "Plaintext left behind.",
    )
    purge_retain_hours: float | None = Field(
        default=None, ge=0,
        description="Databricks, with `purge`: the retention passed to VACUUM. Files the run "
        "replaced are removed only when older than this, so only a short retention removes them "
        "now; Delta refuses less than 168 hours unless `spark.databricks.delta."
        "retentionDurationCheck.enabled` is false where the statement runs. Required with `purge` "
        "on Databricks.",
    )

    @model_validator(mode="after")
    def _pushdown_is_one_statement(self) -> "RunOptions":
        if self.pushdown == "always" and self.commit_every_batch:
            raise ValueError(
                "run.pushdown: always writes the table in one statement, so run.commit_every_batch "
                "cannot apply; drop one of them (auto uses the loop when commit_every_batch is set)"
            )
        return self


DEFAULT_NAME_PATTERNS = [
    r"e_?mail",
    r"phone|mobile|msisdn|(^|_)tel($|_)",
    r"(^|_)ssn($|_)|social_?security",
    r"(^|_)(first|last|full|given|family|middle|sur)_?name($|_)",
    r"address|street",
    r"(^|_)(dob|date_?of_?birth|birth_?date|birthday)($|_)",
]


class ColumnSelectionConfig(ConfigModel):
    """How the action finds the PII columns when the event names none (a dataset-level tag).

    Every column marked by the trigger tag, a PII tag or a glossary term is tokenized (the
    union); only when none is marked do the name patterns choose.
    """

    sources: list[Literal["trigger_tag", "pii_tags", "glossary_terms", "name_patterns"]] = Field(
        default_factory=lambda: ["trigger_tag", "pii_tags", "glossary_terms", "name_patterns"],
        description="Which sources to use, from: `trigger_tag` (fields carrying the trigger tag), "
        "`pii_tags` (fields carrying one of `pii_tags`), `glossary_terms` (fields with one of "
        "`glossary_terms`), `name_patterns` (text columns whose name matches `name_patterns`). "
        "The columns of the first three are unioned; `name_patterns` is used only when they "
        "find none.",
    )
    pii_tags: list[str] = Field(
        default_factory=lambda: ["urn:li:tag:pii"],
        description="Tag URNs (or names) that mark a field as PII.",
    )
    glossary_terms: list[str] = Field(
        default_factory=list,
        description="Glossary term URNs (or names) that mark a field as PII, e.g. "
        "`urn:li:glossaryTerm:Classification.Sensitive`.",
    )
    name_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NAME_PATTERNS),
        description="Case-insensitive regular expressions searched in column names (email, phone, "
        "ssn, names, address, date of birth by default). Only string-typed fields are taken.",
    )

    @field_validator("pii_tags")
    @classmethod
    def _tag_urns(cls, v: list[str]) -> list[str]:
        return [make_tag_urn(t) for t in v]

    @field_validator("glossary_terms")
    @classmethod
    def _term_urns(cls, v: list[str]) -> list[str]:
        return [make_term_urn(t) for t in v]

    @field_validator("name_patterns")
    @classmethod
    def _patterns_compile(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"name pattern {pattern!r} is not a regular expression: {e}") from None
        return v


class ReconcileConfig(ConfigModel):
    """The sweep that finds datasets whose trigger tag no event brought to the action."""

    enabled: bool = Field(
        default=True,
        description="Search DataHub for datasets carrying the trigger tag (on the dataset or a field) "
        "on start-up and then every `interval_s`, and run those whose tag is still waiting: no run "
        "recorded, tagged again after a success, or a last failure a retry can pass. Needs the "
        "`datahub:` section. Off: only events start runs.",
    )
    interval_s: float = Field(default=3600.0, ge=1, description="Seconds between sweeps.")
    startup_delay_s: float = Field(
        default=60.0, ge=0,
        description="Seconds after start-up before the first sweep (the consumer joins its group and "
        "handles waiting events first).",
    )


class WriteBackConfig(ConfigModel):
    """What a run writes back to DataHub (through the `datahub:` section's server)."""

    enabled: bool = Field(default=True, description="Write the outcome back to DataHub at all.")
    tags: bool = Field(
        default=True,
        description="Flip tags: on success remove the trigger tag and add `tokenize/done` + "
        "`tokenize/status:SUCCESS`; on failure add `tokenize/status:FAILED`.",
    )
    run_record: bool = Field(
        default=True,
        description="Write the `last_tokenization_run` JSON custom property.",
    )
    documentation: bool = Field(
        default=True,
        description="Keep a short Markdown summary in a managed section of the dataset's "
        "documentation (the steward's own text is kept).",
    )
    incidents: bool = Field(
        default=True,
        description="A FAILED run raises an OPERATIONAL incident on the dataset (one per dataset, "
        "updated by later failures); the next SUCCESS resolves it. Needs the privilege to edit "
        "incidents; without it runs go on and a warning says so once.",
    )
    runs: bool = Field(
        default=True,
        description="Record each run as a DataProcessInstance with the dataset as its output "
        "(the dataset's Runs tab): STARTED when it begins, then SUCCESS or FAILURE with its "
        "duration and run record. Retries of one event update one instance.",
    )


class TokenizeConfig(ConfigModel):
    """``action.config`` of `configs/tokenize.yaml`."""

    connections: list[ConnectionConfig] = Field(
        description="Warehouse connections; each dataset goes to the one matching its URN's "
        "platform and platform instance.",
    )
    tokenizer: TokenizerConfig = Field(description="The token format.")
    run: RunOptions = Field(default_factory=RunOptions, description="Options of the update loop.")
    trigger_tag: str = Field(
        default="urn:li:tag:tokenize/run",
        description="The tag whose addition to a dataset or a column starts a run (URN or name).",
    )
    column_selection: ColumnSelectionConfig = Field(
        default_factory=ColumnSelectionConfig,
        description="How PII columns are found when the event names none.",
    )
    write_back: WriteBackConfig = Field(
        default_factory=WriteBackConfig, description="What is written back to DataHub after a run."
    )
    reconcile: ReconcileConfig = Field(
        default_factory=ReconcileConfig, description="The sweep that leaves no trigger tag waiting."
    )

    @field_validator("trigger_tag")
    @classmethod
    def _trigger_urn(cls, v: str) -> str:
        return make_tag_urn(v)

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_builds(cls, v: TokenizerConfig) -> TokenizerConfig:
        # Fails at load time (with the plugin's own message, at the `tokenizer` key) rather
        # than on the first event.
        try:
            load_tokenizer(v.type, v.options())
        except TokenizeError as e:
            raise ValueError(str(e)) from None
        return v

    def build_tokenizer(self) -> Tokenizer:
        try:
            return load_tokenizer(self.tokenizer.type, self.tokenizer.options())
        except TokenizeError as e:
            raise ValueError(str(e)) from None


def parse_config(config_dict: dict[str, Any] | None) -> TokenizeConfig:
    """Validate ``action.config``.

    Raises:
        ConfigError: one line naming each problem by its path in the pipeline file, e.g.
            ``action.config.run.batch_sise: unknown key; did you mean batch_size?`` (several
            are joined with "; "); never the values (they may be secrets).
    """
    try:
        return TokenizeConfig.model_validate(config_dict or {})
    except ValidationError as e:
        raise ConfigError(validation_problems(e, TokenizeConfig, "action.config")) from None


def validation_problems(error: ValidationError, model: type[BaseModel], prefix: str) -> str:
    """pydantic's errors as one line: each problem's path under ``prefix`` and what to do.

    Unknown keys get the closest field name (difflib) or the list of valid keys; missing
    keys get their description; other problems what was expected. Inputs are left out.
    """
    problems = []
    for err in error.errors(include_input=False, include_url=False, include_context=False):
        loc = err["loc"]
        path = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        if err["type"] == "extra_forbidden":
            fields = list(_fields_of(_model_at(model, loc[:-1])))
            guess = difflib.get_close_matches(str(loc[-1]), fields, n=1)
            if guess:
                problems.append(f"{path}: unknown key; did you mean {guess[0]}?")
            else:
                problems.append(f"{path}: unknown key; valid keys: {', '.join(fields) or 'none'}")
        elif err["type"] == "missing":
            field = _fields_of(_model_at(model, loc[:-1])).get(str(loc[-1]))
            what = f" ({field.description.strip().rstrip('.')})" if field is not None and field.description else ""
            problems.append(f"{path}: required key is missing{what}")
        else:
            message = " ".join(err["msg"].replace("Value error, ", "").split())
            problems.append(f"{path}: {re.sub(r'^Input should be ', 'expected ', message)}")
    return "; ".join(problems)


def _model_at(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model found at ``loc`` under ``model`` (list indexes step into the list's model)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = _fields_of(model).get(part)
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_of(model: type[BaseModel] | None) -> dict[str, Any]:
    return dict(model.model_fields) if model is not None else {}


@dataclasses.dataclass(frozen=True)
class PipelineFile:
    """What the CLI takes from a pipeline YAML: the action's config and the `datahub:` section."""

    config: TokenizeConfig
    datahub: dict[str, Any] | None


def load_pipeline_file(path: str | pathlib.Path) -> PipelineFile:
    """Read a pipeline YAML, expanding ``${VAR}`` and ``${VAR:-default}`` the way
    ``datahub actions -c`` does.

    Raises:
        ConfigError: unreadable file, YAML syntax error (with its line and column), unset
            variable, no ``action.config``, invalid config; each names the file.
    """
    try:
        whole = load_config_file(path, allow_remote=False)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or getattr(e, "context", None) or first_line(e)
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix the file") from None
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
    datahub = whole.get("datahub")
    try:
        config = parse_config(action["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return PipelineFile(config, datahub if isinstance(datahub, dict) else None)


def load_config(path: str | pathlib.Path) -> TokenizeConfig:
    """``action.config`` of a pipeline YAML (see ``load_pipeline_file``)."""
    return load_pipeline_file(path).config
