-- Reference game schema for the echoes-ops demo and tests (see docs/design.md, "PostgreSQL").
-- The game owns its real schema; every query echoes-ops runs against these tables is
-- configurable. Idempotent: safe to apply to a database that already has these tables.
-- Tables of echoes-ops itself live in the echoes_ops schema and are created by a migration,
-- never here.

CREATE TABLE IF NOT EXISTS characters (
    id                 integer PRIMARY KEY,
    name               text NOT NULL,
    location_id        text NOT NULL,
    hp                 integer NOT NULL,
    max_hp             integer NOT NULL,
    stamina            integer NOT NULL,
    max_stamina        integer NOT NULL,
    level              integer NOT NULL,
    xp                 integer NOT NULL,
    last_movement_time double precision,  -- epoch seconds
    last_active_at     timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS characters_last_active_at_idx ON characters (last_active_at);

CREATE TABLE IF NOT EXISTS inventory (
    character_id integer NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    item_id      text NOT NULL,
    quantity     integer NOT NULL DEFAULT 1,
    durability   integer,
    is_equipped  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (character_id, item_id)
);
