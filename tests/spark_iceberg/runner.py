"""Runs statements on a local Spark 3.5 with Iceberg tables (a separate interpreter: the
Iceberg runtime on the package index is built for Spark 3.5, the suite's pyspark is 4.x).

stdin: JSON {"warehouse": dir, "columns": [...], "rows": [[id, v1, ...], ...],
             "before": [sql, ...], "statements": [sql, ...], "secret": key or null}
stdout: JSON {"results": [[row, ...] per statement], "rows": [[id, v1, ...], ...]} (by id)
The table is local.db.people (id INT, <columns> STRING); `before` runs after the rows are in
(another writer), `statements` are what is being tested.
"""

import json
import sys

import snowpark_connect_deps_iceberg as deps
from pyspark.sql import SparkSession

job = json.load(sys.stdin)
jar = str(deps.get_jar_path("iceberg-spark-runtime-3.5_2.12-1.10.2.jar"))
spark = (SparkSession.builder.master("local[2]").appName("datahub-tokenize-iceberg")
         .config("spark.jars", jar)
         .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
         .config("spark.sql.catalog.local", "org.apache.iceberg.spark.SparkCatalog")
         .config("spark.sql.catalog.local.type", "hadoop")
         .config("spark.sql.catalog.local.warehouse", job["warehouse"])
         .config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
if job.get("secret") is not None:
    # Databricks' secret(scope, key) stand-in (Spark 3.5 has no SQL functions): a Python UDF,
    # not folded like the real one, so the key material is computed per row here.
    value = job["secret"]
    spark.udf.register("secret", lambda scope, key: value if (scope, key) == ("tokenize", "hmac-key") else None)
columns = job["columns"]
spark.sql("CREATE TABLE local.db.people (id INT, " + ", ".join(f"`{c}` STRING" for c in columns) + ") USING iceberg")
schema = "id INT, " + ", ".join(f"`{c}` STRING" for c in columns)
spark.createDataFrame([tuple(r) for r in job["rows"]], schema).writeTo("local.db.people").append()
for sql in job["before"]:
    spark.sql(sql).collect()
results = [[list(r) for r in spark.sql(sql).collect()] for sql in job["statements"]]
rows = [list(r) for r in spark.sql("SELECT * FROM local.db.people ORDER BY id").collect()]
json.dump({"results": results, "rows": rows}, sys.stdout)
spark.stop()
