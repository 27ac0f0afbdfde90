-- The demo warehouse of docker-compose.yml: a `customers` table with PII, the role the
-- tokenize action connects as (exactly the grants README.md "Permissions" lists) and a
-- read-only role for DataHub's ingestion.
--
-- Run with psql inside the target database, with these psql variables (initdb.sh sets them):
--   dbname             the database (appdb in the compose stack)
--   tokenize_role      tokenize
--   tokenize_password  from .env (TOKENIZE_PG_PASSWORD)
--   reader_role        datahub_reader
--   reader_password    from .env (READER_PG_PASSWORD)
\set ON_ERROR_STOP on

CREATE TABLE public.customers (
    id          integer PRIMARY KEY,
    full_name   text NOT NULL,
    email       text NOT NULL,
    phone       text,                  -- PII; NULL for every 7th customer
    city        text NOT NULL,         -- not PII
    signup_date date NOT NULL          -- not PII
);

INSERT INTO public.customers (id, full_name, email, phone, city, signup_date)
SELECT i,
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'])[1 + i % 8]
           || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen'])[1 + i % 7]
           || ' ' || i,
       'customer' || i || '@example.com',
       CASE WHEN i % 7 = 0 THEN NULL ELSE '+1-555-' || lpad(i::text, 4, '0') END,
       (ARRAY['Berlin', 'Lisbon', 'Oslo', 'Austin', 'Osaka'])[1 + i % 5],
       DATE '2024-01-01' + i
FROM generate_series(1, 300) AS i;

-- Nobody but the owner and the roles below gets into this database.
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;

-- The tokenize action's role: README.md, "Permissions".
CREATE ROLE :"tokenize_role" LOGIN PASSWORD :'tokenize_password';
GRANT CONNECT ON DATABASE :"dbname" TO :"tokenize_role";
GRANT USAGE ON SCHEMA public TO :"tokenize_role";
GRANT SELECT, UPDATE ON TABLE public.customers TO :"tokenize_role";
GRANT TEMPORARY ON DATABASE :"dbname" TO :"tokenize_role";

-- DataHub's ingestion (the `postgres` source) only reads.
CREATE ROLE :"reader_role" LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"dbname" TO :"reader_role";
GRANT USAGE ON SCHEMA public TO :"reader_role";
GRANT SELECT ON TABLE public.customers TO :"reader_role";
