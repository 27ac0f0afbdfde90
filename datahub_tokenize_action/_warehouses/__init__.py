"""The warehouse side: a request validated into a plan, executed on the warehouse.

- ``model``: what the steps pass on (table description, target, plan, batch, counts);
- ``plan``: validation and the scan before writing; ``loop``: the client loop;
  ``commit``: COMMIT and a lost COMMIT's outcome; ``run``: one run end to end;
- ``base``: the hooks a dialect fills in; ``postgres`` and ``databricks``: the dialects;
  ``dialects``: which serves which platform;
- ``progress``, ``tokenizer_calls``, ``urls``, ``databricks_url``: their helpers.
"""

from .base import WarehouseTokenizer
from .databricks import DatabricksTokenizer
from .dialects import DIALECTS, warehouse_for
from .model import Batch, BatchWriter, ColumnInfo, Plan, TableDescription, WriteTarget
from .postgres import PostgresTokenizer
from .urls import mask_url

__all__ = [
    "DIALECTS",
    "Batch",
    "BatchWriter",
    "ColumnInfo",
    "DatabricksTokenizer",
    "Plan",
    "PostgresTokenizer",
    "TableDescription",
    "WarehouseTokenizer",
    "WriteTarget",
    "mask_url",
    "warehouse_for",
]
