"""The read path: project pages and files from an ordered list of sources (local index, stage
overlays, upstreams), answered as data the web handlers turn into responses."""
