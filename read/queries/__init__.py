"""The read side's queries, one module per question: ``profiles`` (which profile, its ids and
state), ``timelines`` (a profile's timeline and the feed), ``search`` (people matching filters, the people
list), ``groups``, ``audiences``. SQL is written and bound one way (``feedhouse.read.sql``).

Tables are those of docs/schema.md, read with the deduplication recipes it prescribes:

* **id -> profile**: the key-value mirror ``id_mapping_kv`` (the newest row per id; an id
  without a row is its own profile); **profile -> ids**: candidates from the key-value table
  ``profile_members_kv`` (the graph's last word on each profile; SQL fragments use
  ``id_mapping_by_profile``), each verified against its current mapping. An id's current
  state: ``id_state_kv``.
* **events**: one row per messageId, the newest receipt (``FINAL``, or ``argMax(...,
  received_at)`` grouped by the ordering key where only a few columns are needed: 2-3x cheaper
  than FINAL on small columns, measured at 10M events in 10 parts).
* **state lookups** (``id_state_by_trait|group|audience``): candidate ids only; every match is
  verified against the current state of *all* ids of the candidate's profile, merged with the
  rules of the ``profiles`` view (per trait / audience / the group: newest event time wins,
  ties broken by the larger id).

Cost model measured on chDB (``python -m bench.read_api``): a fraction of a millisecond per
query, a few per MergeTree key lookup (one granule per part; a key-value lookup is close to
the floor), and several of *analysis* for a query with
nested scalar subqueries or UNION branches. So the per-profile endpoints run a few simple
queries (resolution: three key lookups; then one query per table) rather than one composite
query, which measured slower. Aggregations over many profiles (search, groups, audiences) are
single queries whose intermediate sets are scalar arrays, computed once.
"""
