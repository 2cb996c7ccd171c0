-- Patch parts retired within seconds (privacy/executor.py, docs/privacy.md).
--
-- Once ALTER TABLE ... APPLY PATCHES has put a deletion's patch parts into the parts' row masks,
-- the patch parts stay active until the table's cleanup task retires them, and until then every
-- read of the table does extra work for them (docs/benchmarks.md, "Privacy").
-- The cleanup task runs every cleanup_delay_period seconds, backing off to
-- max_cleanup_delay_period (30 s and 300 s by default) plus up to cleanup_delay_period_random_add;
-- after a quiet spell that kept applied patch parts active for up to five minutes. One second, at most
-- two, keeps that to a few seconds; an idle cleanup pass only lists the table's parts.
ALTER TABLE ${db}.events MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.events_by_person_time MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.events_by_time MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.rejected_events MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_mapping MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_mapping_by_profile MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_state MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_state_by_group MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_state_by_trait MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.id_state_by_audience MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.computed_changes MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.computed_current MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
ALTER TABLE ${db}.computed_by_profile MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
