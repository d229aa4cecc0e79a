"""The client's Redis/Valkey backend: the same operations as the daemon, executed by the
client against Redis >= 7.0 or Valkey, for bots on several hosts.

``Client("redis://...")`` and ``AsyncClient("redis://...")`` use it (see
:mod:`sessiond_client.targets`); it needs the ``redis`` extra (redis-py with hiredis).
The semantics are the daemon's own pure code (:mod:`sessiond_client.writes`,
:mod:`sessiond_client.resolve`, :mod:`sessiond_client.listing`,
:mod:`sessiond_client.checks`); Redis only provides atomicity, through a small library
of compare-and-set functions (:mod:`.lua`). The modules:

- :mod:`.layout`: key names and value formats (pure);
- :mod:`.lua`: the server-side functions (pure text);
- :mod:`.profile`: what the server promises (version, durability, eviction) (pure);
- :mod:`.execute`: each operation as a sans-I/O generator of Redis commands (pure);
- :mod:`.watching`: ``watch`` over the per-agent stream (pure);
- :mod:`.sync_transport`, :mod:`.async_transport`: run them on redis-py (I/O).
"""
