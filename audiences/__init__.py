"""Audiences and computed traits: defined by an operator, computed by Feedhouse, sent out as Engage does.

``definitions`` (what an operator may define, validated), ``compile`` (definitions -> SQL with
every value bound), ``evaluate`` (profiles -> values -> changes, in ClickHouse), ``runner``
(the evaluator and the senders as threads or a process), ``messages`` / ``delivery`` /
``senders`` (changes -> Segment calls -> destinations), ``admin`` (the admin API).
"""
