"""The market-data cache in Redis: models (``models``), the writing resource (``resource``), and the
read API with its warehouse loaders (``reader``). This docstring is the one description of the keys.

Key schema (``P`` = ``key_prefix``, default ``md:v1``; the version is bumped when a stored model
changes incompatibly, so old and new readers never parse each other's values). The symbol sits in
a Redis Cluster hash tag ``{...}``: every key of one symbol lands in the same slot, so a chain
can be replaced in one MULTI/EXEC even on a Cluster.

==============================  =======  ==============================================  ==========
key                             type     value                                           TTL
==============================  =======  ==============================================  ==========
``P:{AAPL}:market``             string   ``MarketData`` JSON: last price, session OHLCV,  market_ttl
                                         latest daily + intraday indicator snapshots
``P:{AAPL}:chain``              hash     ``meta`` -> ``ChainMeta`` JSON; one field per    chain_ttl
                                         expiration ``exp:2025-12-19`` -> JSON list of
                                         ``OptionQuote`` (our IV and Greeks)
``P:{AAPL}:flow``               string   ``FlowSummary`` JSON (latest snapshot day)       flow_ttl
``P:stats:<kind>:hits|misses``  string   INCR counters of the read API (kind = market,    none
                                         chain, flow)
``P:warm:last``                 hash     what the last warm wrote/skipped, and when       none
==============================  =======  ==============================================  ==========

TTLs (seconds, configurable): market 4 days, chain 4 days, flow 4 days. Long enough that data
survives a weekend plus a holiday between two warms (after-close runs and the intraday sensor
refresh them far more often), short enough that a pipeline that has stopped stops serving stale
values instead of serving them forever. A reader that misses falls back to the warehouse.
"""
