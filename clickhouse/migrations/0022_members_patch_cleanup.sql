-- profile_members (migration 0020) retires applied patch parts as promptly as the other tables
-- a deletion masks (migration 0017): without it, its cleanup task backs off to five minutes and
-- every read of the table keeps applying a deletion's patch parts until then.
ALTER TABLE ${db}.profile_members MODIFY SETTING cleanup_delay_period = 1, max_cleanup_delay_period = 2, cleanup_delay_period_random_add = 1;
