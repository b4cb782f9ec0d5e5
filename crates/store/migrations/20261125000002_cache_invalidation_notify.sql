-- Cache invalidation from the database: every change to users, organizations,
-- organization_members, projects and tasks NOTIFYs `ncy_cache_invalidation` with the table, the
-- operation and the ids the cache gateway maps to keys and tags (never row contents beyond ids).
-- Idempotent: CREATE OR REPLACE + DROP TRIGGER IF EXISTS, so re-running it is harmless.

CREATE OR REPLACE FUNCTION ncy_cache_notify() RETURNS trigger AS $$
DECLARE
    new_ids jsonb := NULL;
    old_ids jsonb := NULL;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_ids := jsonb_strip_nulls(jsonb_build_object(
            'id', to_jsonb(NEW) ->> 'id',
            'organization_id', to_jsonb(NEW) ->> 'organization_id',
            'user_id', to_jsonb(NEW) ->> 'user_id',
            'project_id', to_jsonb(NEW) ->> 'project_id',
            'assignee_id', to_jsonb(NEW) ->> 'assignee_id'));
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_ids := jsonb_strip_nulls(jsonb_build_object(
            'id', to_jsonb(OLD) ->> 'id',
            'organization_id', to_jsonb(OLD) ->> 'organization_id',
            'user_id', to_jsonb(OLD) ->> 'user_id',
            'project_id', to_jsonb(OLD) ->> 'project_id',
            'assignee_id', to_jsonb(OLD) ->> 'assignee_id'));
    END IF;
    PERFORM pg_notify('ncy_cache_invalidation', jsonb_build_object(
        'table', TG_TABLE_NAME, 'op', TG_OP, 'new', new_ids, 'old', old_ids)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS users_cache_notify ON users;
CREATE TRIGGER users_cache_notify AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION ncy_cache_notify();
DROP TRIGGER IF EXISTS organizations_cache_notify ON organizations;
CREATE TRIGGER organizations_cache_notify AFTER INSERT OR UPDATE OR DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION ncy_cache_notify();
DROP TRIGGER IF EXISTS organization_members_cache_notify ON organization_members;
CREATE TRIGGER organization_members_cache_notify AFTER INSERT OR UPDATE OR DELETE ON organization_members
    FOR EACH ROW EXECUTE FUNCTION ncy_cache_notify();
DROP TRIGGER IF EXISTS projects_cache_notify ON projects;
CREATE TRIGGER projects_cache_notify AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION ncy_cache_notify();
DROP TRIGGER IF EXISTS tasks_cache_notify ON tasks;
CREATE TRIGGER tasks_cache_notify AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION ncy_cache_notify();
