"""Stand-ins for the systems around the action, for tests, `make demo` and benchmarks.

Not used by the action itself. Each speaks the real system's protocol on loopback:

- ``postgres``: a throwaway PostgreSQL cluster from the system's server binaries;
- ``kafka``: librdkafka's mock cluster (the real Kafka protocol) and a PlatformEvent producer;
- ``schema_registry``: a Confluent-compatible schema registry over HTTP;
- ``gms``: a recording DataHub GMS (the requests ``DataHubGraph`` makes);
- ``pipeline``: the stock ``datahub_actions`` pipeline run in a thread.
"""
