"""The contract every warehouse dialect keeps, written once and run per warehouse.

A subclass provides the ``wh`` fixture (a harness, see ``harness.py``).
"""

from __future__ import annotations

import pytest

from datahub_tokenize_action import (
    ColumnNotFoundError,
    NoKeyError,
    TableNotFoundError,
    TokenizeRequest,
    TokenTooLongError,
    UnsupportedColumnTypeError,
)
from datahub_tokenize_action._runner import run_request

PEOPLE = [
    (1, "alice@example.com", "+1-555-0100", "Alice", 31),
    (2, "bob@example.com", None, "Bob", 42),
    (3, "", "+1-555-0102", "Carol", None),
    (4, "dave@example.com", "+1-555-0103", None, 23),
    (5, "erin@example.com", "+1-555-0104", "Erin", 57),
]
PEOPLE_COLUMNS = [("id", "int"), ("email", "text"), ("phone", "text"), ("name", "text"), ("age", "int")]


class WarehouseContract:
    """Behaviours of the update loop that hold on every warehouse."""

    @pytest.fixture
    def wh(self):  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def run(self, wh, table, columns, dry_run=False, **run_opts):
        config = wh.config(**run_opts)
        return run_request(config, TokenizeRequest(wh.urn(table), tuple(columns)), dry_run=dry_run)

    def tokenizer(self, wh):
        return wh.config().build_tokenizer()

    def test_first_run_tokenizes_every_plaintext_value_and_second_run_changes_nothing(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        tok = self.tokenizer(wh)

        first = self.run(wh, table, ["email", "phone"], batch_size=2)

        assert first.status == "SUCCESS"
        assert first.rows_updated == 5
        assert first.values_tokenized == {"email": 4, "phone": 4}
        after = wh.rows(table)
        for before_row, row in zip(PEOPLE, after):
            for i in (1, 2):
                if before_row[i]:
                    assert row[i] == tok.tokenize(before_row[i])
                else:
                    assert row[i] == before_row[i]
        second = self.run(wh, table, ["email", "phone"], batch_size=2)
        assert (second.rows_updated, second.rows_scanned) == (0, 0)
        assert second.values_skipped == {"email": 4, "phone": 4}
        assert wh.rows(table) == after

    def test_nulls_and_empty_strings_stay_as_they_are(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        result = self.run(wh, table, ["email", "phone"])
        rows = {r[0]: r for r in wh.rows(table)}
        assert rows[2][2] is None
        assert rows[3][1] == ""
        assert result.nulls == {"email": 0, "phone": 1}
        assert result.empty_strings == {"email": 1, "phone": 0}

    def test_unicode_long_and_awkward_values_round_trip_to_their_tokens(self, wh):
        values = [
            "zoë@exämple.com", "日本語のメール@example.jp", "emoji 🙂 mail", "x" * 20_000,
            "tab\there", "new\nline", "back\\slash", "quote ' and \" both", "cr\rreturn", "  padded  ",
        ]
        table = wh.create_table([("id", "int"), ("v", "text")], list(enumerate(values)))
        tok = self.tokenizer(wh)
        result = self.run(wh, table, ["v"], batch_size=3)
        assert result.values_tokenized == {"v": len(values)}
        assert [r[1] for r in wh.rows(table)] == [tok.tokenize(v) for v in values]

    def test_values_that_already_are_tokens_are_skipped(self, wh):
        tok = self.tokenizer(wh)
        rows = [(1, tok.tokenize("a@x.com")), (2, "b@x.com"), (3, tok.tokenize("c@x.com"))]
        table = wh.create_table([("id", "int"), ("email", "text")], rows)
        result = self.run(wh, table, ["email"])
        assert result.values_skipped == {"email": 2}
        assert result.values_tokenized == {"email": 1}
        assert [r[1] for r in wh.rows(table)] == [tok.tokenize(v) for v in ("a@x.com", "b@x.com", "c@x.com")]

    def test_only_the_named_columns_change(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        others = ["id", "phone", "name", "age"]
        before = wh.checksum(table, others)
        self.run(wh, table, ["email"])
        assert wh.checksum(table, others) == before
        assert wh.checksum(table, ["email"]) != wh.checksum(table, others)

    def test_dry_run_counts_what_would_change_and_writes_nothing(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        before = wh.checksum(table)
        result = self.run(wh, table, ["email", "phone"], dry_run=True)
        assert result.dry_run is True
        assert result.rows_updated == 5
        assert result.values_tokenized == {"email": 4, "phone": 4}
        assert wh.checksum(table) == before

    def test_a_missing_table_is_refused(self, wh):
        with pytest.raises(TableNotFoundError, match="does not exist"):
            self.run(wh, "no_such_table", ["email"])

    def test_a_missing_column_is_refused_and_nothing_changes(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        before = wh.checksum(table)
        with pytest.raises(ColumnNotFoundError, match="'emial'"):
            self.run(wh, table, ["email", "emial"])
        assert wh.checksum(table) == before

    def test_a_non_text_column_is_refused_and_nothing_changes(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE)
        before = wh.checksum(table)
        with pytest.raises(UnsupportedColumnTypeError, match="'age'"):
            self.run(wh, table, ["email", "age"])
        assert wh.checksum(table) == before

    def test_a_table_without_a_key_is_refused_and_nothing_changes(self, wh):
        table = wh.create_table(PEOPLE_COLUMNS, PEOPLE, key=None)
        before = wh.checksum(table)
        with pytest.raises(NoKeyError, match="key_columns"):
            self.run(wh, table, ["email"])
        assert wh.checksum(table) == before

    def test_a_configured_key_shared_by_several_rows_is_refused_and_nothing_changes(self, wh):
        # Paging by a key that is not unique would skip rows at page boundaries.
        rows = [(i, i % 3, f"user{i}@x.com") for i in range(1, 31)]
        table = wh.create_table([("id", "int"), ("grp", "int"), ("email", "text")], rows, key=None)
        before = wh.checksum(table)
        config = wh.config(key_columns={f"{wh.schema}.{table}": ["grp"]}, batch_size=4)
        with pytest.raises(NoKeyError, match=r"key \(grp\).* 3 key value\(s\) are shared"):
            run_request(config, TokenizeRequest(wh.urn(table), ("email",)))
        assert wh.checksum(table) == before

    def test_a_configured_key_holding_nulls_is_refused_and_nothing_changes(self, wh):
        rows = [(1, "a", "a@x.com"), (2, None, "b@x.com"), (3, "c", "c@x.com")]
        table = wh.create_table([("id", "int"), ("code", "text"), ("email", "text")], rows, key=None)
        before = wh.checksum(table)
        config = wh.config(key_columns={f"{wh.schema}.{table}": ["code"]})
        with pytest.raises(NoKeyError, match="hold a NULL"):
            run_request(config, TokenizeRequest(wh.urn(table), ("email",)))
        assert wh.checksum(table) == before

    def test_a_configured_key_unique_in_the_data_pages_through_every_row(self, wh):
        rows = [(i, f"user{i}@x.com") for i in range(1, 12)]
        table = wh.create_table([("id", "int"), ("email", "text")], rows, key=None)
        config = wh.config(key_columns={f"{wh.schema}.{table}": ["id"]}, batch_size=4)
        first = run_request(config, TokenizeRequest(wh.urn(table), ("email",)))
        second = run_request(config, TokenizeRequest(wh.urn(table), ("email",)))
        tok = self.tokenizer(wh)
        assert (first.rows_updated, second.rows_updated) == (11, 0)
        assert wh.rows(table) == [(i, tok.tokenize(e)) for i, e in rows]

    def test_a_column_too_narrow_for_tokens_is_refused_and_nothing_changes(self, wh):
        table = wh.create_table([("id", "int"), ("email", "varchar(30)"), ("phone", "text")],
                                [(1, "a@x.com", "1"), (2, "b@x.com", "2")])
        before = wh.checksum(table)
        with pytest.raises(TokenTooLongError, match="(?i)'email' is (varchar|character varying).*at least 57 characters"):
            self.run(wh, table, ["phone", "email"])
        assert wh.checksum(table) == before

    def test_a_column_wide_enough_for_tokens_is_accepted(self, wh):
        table = wh.create_table([("id", "int"), ("email", "varchar(64)")], [(1, "a@x.com")])
        assert self.run(wh, table, ["email"]).values_tokenized == {"email": 1}

    def test_a_composite_key_pages_through_every_row(self, wh):
        rows = [(a, b, f"user{a}-{b}@x.com") for a in range(4) for b in range(5)]
        table = wh.create_table([("a", "int"), ("b", "int"), ("email", "text")], rows, key=("a", "b"))
        result = self.run(wh, table, ["email"], batch_size=3)
        assert result.values_tokenized == {"email": 20}
        tok = self.tokenizer(wh)
        assert sorted(r[2] for r in wh.rows(table, order_by="a")) == sorted(tok.tokenize(r[2]) for r in rows)

    def test_a_text_key_with_awkward_characters_addresses_its_rows(self, wh):
        keys = ["a\tb", "c\\d", "e\nf", "plain", "ünï"]
        table = wh.create_table([("id", "text"), ("email", "text")], [(k, f"{i}@x.com") for i, k in enumerate(keys)])
        result = self.run(wh, table, ["email"], batch_size=2)
        assert result.rows_updated == 5
        tok = self.tokenizer(wh)
        assert {r[0]: r[1] for r in wh.rows(table)} == {k: tok.tokenize(f"{i}@x.com") for i, k in enumerate(keys)}

    def test_the_poc_tokenizer_writes_the_seeds_format(self, wh):
        table = wh.create_table([("id", "int"), ("email", "text")], [(1, "alice@example.com")])
        config = wh.config(tokenizer={"type": "poc"})
        run_request(config, TokenizeRequest(wh.urn(table), ("email",)))
        assert wh.rows(table) == [(1, "tok_YWxpY2VAZXhhbXBsZS5jb20=_poc")]
