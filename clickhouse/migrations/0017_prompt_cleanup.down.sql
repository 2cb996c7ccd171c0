-- The cleanup task's default pace again.
ALTER TABLE ${db}.events RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.events_by_person_time RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.events_by_time RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.rejected_events RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_mapping RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_mapping_by_profile RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_state RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_state_by_group RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_state_by_trait RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.id_state_by_audience RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.computed_changes RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.computed_current RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
ALTER TABLE ${db}.computed_by_profile RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
