"""Benchmarks for sessiond and its peers (not tests). Package marker only: no I/O here.

Run ``python -m bench --help``. The modules: ``entries`` (synthetic stores), ``contender``
(the interface every contender implements), ``workloads`` (what is measured, worker-side
loops), ``stats`` (percentiles and medians), ``pool`` (spawned client processes),
``runner`` (the run loop), ``report`` (table and JSON), ``registry`` (which contenders
run: the place to add sessiond's), and one module per contender: ``original_store``,
``redis_peer``, ``floor``, ``sessiond_peer``.
"""
