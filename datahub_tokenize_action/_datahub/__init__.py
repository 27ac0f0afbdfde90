"""The DataHub side: what the action reads from DataHub and writes back to it.

- ``events``: a DataHub event → a request; ``columns``: the schema → the columns to tokenize;
- ``writeback``: a result → the MCPs that record it (pure); ``runs``: each run as a
  DataProcessInstance; ``last_run``: the record as a structured property; ``incidents``: a
  failure's incident (all pure);
- ``recording``: reading the state a run starts from and emitting its record; ``graph``: the
  client as used, and DataHub errors; ``metrics``: Prometheus counters of runs and events.
"""
