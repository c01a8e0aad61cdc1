"""Applications built on the core: the fleet demo, the in-process benchmark, bag replay."""
