-- The evaluator's scratch table: the ids of the profiles one pass evaluates, and the profile of
-- each, written (client.insert) right before the pass's query and read by it. Memory engine:
-- nothing in it outlives a pass, so nothing needs to outlive a restart. One evaluator writes it.
CREATE TABLE IF NOT EXISTS ${db}.audience_scope
(
    id String,
    owner String
)
ENGINE = Memory;
