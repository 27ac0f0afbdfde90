"""Runs in the Spark 3.5 + Iceberg interpreter (`make iceberg`) for bench_spark.py.

argv: warehouse dir, rows. Builds local.db.people (id BIGINT, email STRING, phone STRING) of
`rows` rows, then executes the SQL statements read from stdin (one JSON string per line) in
order, and prints one JSON line: {"seconds": time of the statements, "plaintext_left": n}.
"""

import json
import sys
import time

import snowpark_connect_deps_iceberg as deps
from pyspark.sql import SparkSession

warehouse, rows = sys.argv[1], int(sys.argv[2])
jar = str(deps.get_jar_path("iceberg-spark-runtime-3.5_2.12-1.10.2.jar"))
spark = (SparkSession.builder.master("local[2]").appName("datahub-tokenize-bench")
         .config("spark.jars", jar).config("spark.driver.memory", "6g")
         .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
         .config("spark.sql.catalog.local", "org.apache.iceberg.spark.SparkCatalog")
         .config("spark.sql.catalog.local.type", "hadoop")
         .config("spark.sql.catalog.local.warehouse", warehouse)
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
spark.sql("CREATE TABLE local.db.people (id BIGINT, email STRING, phone STRING) USING iceberg "
          "TBLPROPERTIES ('write.update.mode'='copy-on-write', 'write.merge.mode'='copy-on-write')")
(spark.range(1, rows + 1)
 .selectExpr("id", "concat('user', id, '@example.com') AS email", "concat('+1-555-', lpad(id, 7, '0')) AS phone")
 .writeTo("local.db.people").append())
start = time.perf_counter()
for line in sys.stdin:
    spark.sql(json.loads(line)).collect()
seconds = time.perf_counter() - start
left = spark.sql("SELECT count(*) FROM local.db.people WHERE email NOT LIKE 'tok2_%' OR phone NOT LIKE 'tok2_%'").collect()[0][0]
print(json.dumps({"seconds": seconds, "plaintext_left": left}))
spark.stop()
