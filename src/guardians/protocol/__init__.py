"""Sans-I/O protocols: typed messages in, typed messages out; no sockets, clocks or globals."""
