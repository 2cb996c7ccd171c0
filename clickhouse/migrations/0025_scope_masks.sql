-- Each id of a pass's scope carries the mask of the event kinds its profile is evaluated for
-- (audiences/evaluate.py, "relevance"): every kind (all bits set) for a profile evaluated whole.
ALTER TABLE ${db}.audience_scope ADD COLUMN IF NOT EXISTS mask UInt64 DEFAULT 18446744073709551615;
