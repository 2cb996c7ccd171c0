-- The cleanup task's default pace again.
ALTER TABLE ${db}.profile_members RESET SETTING cleanup_delay_period, max_cleanup_delay_period, cleanup_delay_period_random_add;
