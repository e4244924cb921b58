"""Where records and results are kept: the interfaces, the factory and the backends."""
