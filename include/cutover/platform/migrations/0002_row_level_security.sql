-- 0002 — row-level security for two roles, and the least privileges they need.
--
-- :"schema", :"service_role" and :"app_role" are psql-style variables: the runner
-- (cutover.platform.schema) puts the quoted identifiers of the target schema and of the two roles
-- there (defaults cutover_service / cutover_app, created NOLOGIN before this file runs when missing).
--
-- * service role: reads and writes every row of every table (back-office jobs, the migration itself,
--   the daily aggregation).
-- * application role: sees and writes only the rows of the tenant of the current request, taken the
--   Supabase / PostgREST way from the JWT claims setting:
--       SELECT set_config('request.jwt.claims', '{"tenant_id": "acme"}', true);  -- per transaction
--   No claims, or no tenant_id claim: current_tenant_id() is NULL and the role sees and writes
--   nothing. Claims that are not JSON raise an error (fail closed). daily_statistics is read-only to
--   it; workflow_runs and message_logs are history: no DELETE.
--
-- ENABLE + FORCE: the policies apply to the tables' owner too (superusers and BYPASSRLS roles still
-- bypass them). Identity columns need no grant on their sequences (PostgreSQL checks none for them).

CREATE FUNCTION current_tenant_id() RETURNS text
    LANGUAGE sql STABLE
    SET search_path = ''
AS $$
    SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'tenant_id'
$$;
COMMENT ON FUNCTION current_tenant_id() IS 'The tenant of the current request: request.jwt.claims ->> tenant_id (NULL when unset)';

REVOKE ALL ON FUNCTION current_tenant_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION touch_updated_at() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_tenant_id() TO :"service_role", :"app_role";

GRANT USAGE ON SCHEMA :"schema" TO :"service_role", :"app_role";

GRANT SELECT, INSERT, UPDATE, DELETE
    ON message_templates, individual_variable_mappings, workflows, workflow_runs, message_logs, daily_statistics
    TO :"service_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON message_templates, individual_variable_mappings, workflows TO :"app_role";
GRANT SELECT, INSERT, UPDATE ON workflow_runs, message_logs TO :"app_role";
GRANT SELECT ON daily_statistics TO :"app_role";

ALTER TABLE message_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_templates FORCE ROW LEVEL SECURITY;
CREATE POLICY message_templates_service ON message_templates FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY message_templates_tenant ON message_templates FOR ALL TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

ALTER TABLE individual_variable_mappings ENABLE ROW LEVEL SECURITY;
ALTER TABLE individual_variable_mappings FORCE ROW LEVEL SECURITY;
CREATE POLICY individual_variable_mappings_service ON individual_variable_mappings FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY individual_variable_mappings_tenant ON individual_variable_mappings FOR ALL TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

ALTER TABLE workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflows FORCE ROW LEVEL SECURITY;
CREATE POLICY workflows_service ON workflows FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY workflows_tenant ON workflows FOR ALL TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

ALTER TABLE workflow_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY workflow_runs_service ON workflow_runs FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY workflow_runs_tenant ON workflow_runs FOR ALL TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

ALTER TABLE message_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_logs FORCE ROW LEVEL SECURITY;
CREATE POLICY message_logs_service ON message_logs FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY message_logs_tenant ON message_logs FOR ALL TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id())) WITH CHECK (tenant_id = (SELECT current_tenant_id()));

ALTER TABLE daily_statistics ENABLE ROW LEVEL SECURITY;
ALTER TABLE daily_statistics FORCE ROW LEVEL SECURITY;
CREATE POLICY daily_statistics_service ON daily_statistics FOR ALL TO :"service_role"
    USING (true) WITH CHECK (true);
CREATE POLICY daily_statistics_tenant_read ON daily_statistics FOR SELECT TO :"app_role"
    USING (tenant_id = (SELECT current_tenant_id()));
