-- Run once, on the first start of an empty data volume, by the postgres
-- image's entrypoint (postgres:15 and rtm-postgres:15 alike) as POSTGRES_USER
-- on POSTGRES_DB. RTM also creates the schema when it is missing (rtm-migrate),
-- this keeps ownership explicit and matches a provisioned production setup.
CREATE SCHEMA IF NOT EXISTS rtmanager AUTHORIZATION CURRENT_USER;
