-- Every stored resource, keyed by (type, mesh, name); mesh is '' for global-scoped kinds.
--
-- The key columns use the "C" collation so that ORDER BY mesh, name is byte order: the order the
-- in-memory store lists in, and one the primary key index can serve without a sort.
CREATE TABLE resources (
    type              text COLLATE "C" NOT NULL,
    mesh              text COLLATE "C" NOT NULL DEFAULT '',
    name              text COLLATE "C" NOT NULL,
    -- Optimistic lock: 1 on insert, +1 on every update.
    version           bigint NOT NULL,
    -- JSON text, not jsonb: secret kinds will store an encrypted envelope here, and text keeps
    -- whatever JSON the writer produced (jsonb would reject \u0000 and reorder keys).
    spec              text NOT NULL,
    labels            jsonb NOT NULL DEFAULT '{}',
    owner_type        text COLLATE "C" NULL,
    owner_mesh        text COLLATE "C" NULL,
    owner_name        text COLLATE "C" NULL,
    creation_time     timestamptz NOT NULL,
    modification_time timestamptz NOT NULL,
    PRIMARY KEY (type, mesh, name),
    -- Deleting an owner deletes what it owns (a Mesh takes its Secrets and Dataplanes with it).
    FOREIGN KEY (owner_type, owner_mesh, owner_name)
        REFERENCES resources (type, mesh, name) ON DELETE CASCADE,
    -- An owner is all three columns or none: a partial owner would escape the foreign key check.
    CHECK ((owner_type IS NULL) = (owner_mesh IS NULL) AND (owner_mesh IS NULL) = (owner_name IS NULL))
);

-- The cascade looks rows up by owner; without this index every delete scans the table.
CREATE INDEX resources_owner_idx ON resources (owner_type, owner_mesh, owner_name);

-- Announces every committed row change, cascaded deletes included, to every LISTENing replica.
-- NOTIFY is delivered at commit, in commit order, and not at all on rollback. PostgreSQL folds
-- identical payloads sent in one transaction into one; the `at` field keeps every payload distinct.
CREATE FUNCTION resources_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed resources;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_notify(
        'meshplane_resource_events',
        json_build_object(
            'op', TG_OP,
            'type', changed.type,
            'mesh', changed.mesh,
            'name', changed.name,
            'version', changed.version,
            -- Makes every payload distinct: PostgreSQL folds identical notifications of one
            -- transaction into one, which would hide a delete and re-create of the same key.
            'at', clock_timestamp()
        )::text
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER resources_notify
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION resources_notify();
