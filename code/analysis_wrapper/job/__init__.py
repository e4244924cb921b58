"""The unit of work: job files, their parameters in layers, input locations, job grids."""
