"""Base databases (基础库): one module per base table, each built from its upstream tables through its gate."""
